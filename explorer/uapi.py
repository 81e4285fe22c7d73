"""iommufd and VFIO ioctl command numbers and names: the user interface's vocabulary.

iommufd commands are _IO(';', 0x80 + n) and VFIO's are _IO(';', 100 + n) (include/uapi/linux/iommufd.h,
include/uapi/linux/vfio.h); the ioctl `cmd` as seen by sys_enter_ioctl is 0x3b00 | nr.
"""

from __future__ import annotations

IOCTL_TYPE = ord(";")

IOMMUFD_COMMANDS: dict[int, str] = {
    0x80: "IOMMU_DESTROY", 0x81: "IOMMU_IOAS_ALLOC", 0x82: "IOMMU_IOAS_ALLOW_IOVAS", 0x83: "IOMMU_IOAS_COPY",
    0x84: "IOMMU_IOAS_IOVA_RANGES", 0x85: "IOMMU_IOAS_MAP", 0x86: "IOMMU_IOAS_UNMAP", 0x87: "IOMMU_OPTION",
    0x88: "IOMMU_VFIO_IOAS", 0x89: "IOMMU_HWPT_ALLOC", 0x8A: "IOMMU_GET_HW_INFO",
    0x8B: "IOMMU_HWPT_SET_DIRTY_TRACKING", 0x8C: "IOMMU_HWPT_GET_DIRTY_BITMAP", 0x8D: "IOMMU_HWPT_INVALIDATE",
    0x8E: "IOMMU_FAULT_QUEUE_ALLOC", 0x8F: "IOMMU_IOAS_MAP_FILE", 0x90: "IOMMU_VIOMMU_ALLOC",
    0x91: "IOMMU_VDEVICE_ALLOC", 0x92: "IOMMU_IOAS_CHANGE_PROCESS", 0x93: "IOMMU_VEVENTQ_ALLOC",
    0x94: "IOMMU_HW_QUEUE_ALLOC",
}
VFIO_BASE = 100
VFIO_COMMANDS: dict[int, str] = {
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
