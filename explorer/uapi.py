"""iommufd and VFIO ioctl command numbers and names: the user interface's vocabulary.

iommufd commands are _IO(';', 0x80 + n) and VFIO's are _IO(';', 100 + n) (include/uapi/linux/iommufd.h,
include/uapi/linux/vfio.h); the ioctl `cmd` as seen by sys_enter_ioctl is 0x3b00 | nr.
"""

from __future__ import annotations

IOCTL_TYPE = ord(";")
_OBJECT_CALLS = ("_ALLOC", "_DESTROY", "_BIND_IOMMUFD")  # commands that make or end an object the model keeps


def only_counted(name: str, ret: int | None) -> bool:
    """Whether the model only counts a call of `name` that returned `ret`: a failed call, or one that makes or
    ends no object (`Simulator._uapi`; the settling in simulator/pages.py counts such calls a batch at a time)."""
    return (ret is not None and ret < 0) or not name.endswith(_OBJECT_CALLS)

IOMMUFD_COMMANDS: dict[int, str] = {
    0x80: "IOMMU_DESTROY", 0x81: "IOMMU_IOAS_ALLOC", 0x82: "IOMMU_IOAS_ALLOW_IOVAS", 0x83: "IOMMU_IOAS_COPY",
    0x84: "IOMMU_IOAS_IOVA_RANGES", 0x85: "IOMMU_IOAS_MAP", 0x86: "IOMMU_IOAS_UNMAP", 0x87: "IOMMU_OPTION",
    0x88: "IOMMU_VFIO_IOAS", 0x89: "IOMMU_HWPT_ALLOC", 0x8A: "IOMMU_GET_HW_INFO",
    0x8B: "IOMMU_HWPT_SET_DIRTY_TRACKING", 0x8C: "IOMMU_HWPT_GET_DIRTY_BITMAP", 0x8D: "IOMMU_HWPT_INVALIDATE",
    0x8E: "IOMMU_FAULT_QUEUE_ALLOC", 0x8F: "IOMMU_IOAS_MAP_FILE", 0x90: "IOMMU_VIOMMU_ALLOC",
    0x91: "IOMMU_VDEVICE_ALLOC", 0x92: "IOMMU_IOAS_CHANGE_PROCESS", 0x93: "IOMMU_VEVENTQ_ALLOC",
    0x94: "IOMMU_HW_QUEUE_ALLOC",
    0xA0: "IOMMU_TEST_CMD",  # iommufd's selftest driver (CONFIG_IOMMUFD_TEST): mock devices, TRIGGER_IOPF
}
# IOMMU_TEST_CMD's `op` (drivers/iommu/iommufd/iommufd_test.h; numbers only ever appended: 6.12 ends at
# TRIGGER_IOPF, 6.15 adds the PASID_* ops, 6.19 the DMABUF ones).
IOMMU_TEST_OPS: dict[int, str] = dict(enumerate((
    "ADD_RESERVED", "MOCK_DOMAIN", "MD_CHECK_MAP", "MD_CHECK_REFS", "CREATE_ACCESS", "DESTROY_ACCESS_PAGES",
    "ACCESS_PAGES", "ACCESS_RW", "SET_TEMP_MEMORY_LIMIT", "MOCK_DOMAIN_REPLACE", "ACCESS_REPLACE_IOAS",
    "MOCK_DOMAIN_FLAGS", "DIRTY", "MD_CHECK_IOTLB", "TRIGGER_IOPF", "DEV_CHECK_CACHE", "TRIGGER_VEVENT",
    "PASID_ATTACH", "PASID_REPLACE", "PASID_DETACH", "PASID_CHECK_HWPT", "DMABUF_GET", "DMABUF_REVOKE"), start=1))
VFIO_BASE = 100
# The VFIO type1 container calls, which iommufd also answers on /dev/iommu (iommufd/vfio_compat.c). 112..117
# are also VFIO *device* calls (VFIO_DEVICE_GET_PCI_HOT_RESET_INFO ..): these names hold only on an iommufd or
# a container fd, which the capture tells apart by the calls made on that fd (see `VFIO_CONTAINER_PROBES`).
VFIO_COMPAT_COMMANDS: dict[int, str] = {
    VFIO_BASE + 0: "VFIO_GET_API_VERSION", VFIO_BASE + 1: "VFIO_CHECK_EXTENSION", VFIO_BASE + 2: "VFIO_SET_IOMMU",
    VFIO_BASE + 12: "VFIO_IOMMU_GET_INFO", VFIO_BASE + 13: "VFIO_IOMMU_MAP_DMA",
    VFIO_BASE + 14: "VFIO_IOMMU_UNMAP_DMA", VFIO_BASE + 17: "VFIO_IOMMU_DIRTY_PAGES",
}
VFIO_CONTAINER_PROBES = frozenset(range(VFIO_BASE, VFIO_BASE + 3))  # answered only by a container or iommufd
VFIO_COMMANDS: dict[int, str] = {
    **VFIO_COMPAT_COMMANDS,
    VFIO_BASE + 18: "VFIO_DEVICE_BIND_IOMMUFD",
    VFIO_BASE + 19: "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    VFIO_BASE + 20: "VFIO_DEVICE_DETACH_IOMMUFD_PT",
}
VFIO_DEVICE_ATTACH_PASID = 1 << 0

COMMANDS: dict[int, str] = {(IOCTL_TYPE << 8) | nr: name for nr, name in {**IOMMUFD_COMMANDS, **VFIO_COMMANDS}.items()}
NUMBERS: dict[str, int] = {name: cmd for cmd, name in COMMANDS.items()}


def command_name(cmd: int) -> str:
    """The command's name, or a name built from its number so that new commands are still told apart."""
    name = COMMANDS.get(cmd & 0xFFFF)
    if name is not None:
        return name
    nr = cmd & 0xFF
    family = "IOMMU" if nr >= 0x80 else "VFIO"
    return f"{family}_UNKNOWN_0x{nr:02x}"


def command_number(name: str) -> int:
    try:
        return NUMBERS[name]
    except KeyError:
        raise ValueError(f"unknown iommufd/VFIO command {name!r}") from None
