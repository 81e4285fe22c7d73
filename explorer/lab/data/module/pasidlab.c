// SPDX-License-Identifier: GPL-2.0
/*
 * pasidlab: drives the IOMMU core's global PASID allocator (iommu_alloc_global_pasid, 6.6+), which no selftest
 * reaches, from a device of its own that stands for a PASID-capable one (dev->iommu->max_pasids set, no IOMMU
 * behind it: the allocator reads nothing else). At load it allocates `allocs` PASIDs and frees the first `frees`;
 * /sys/kernel/debug/pasidlab/state says what it did and what it still holds; unloading frees the rest.
 * Not yet: SVA bind/unbind (no lab IOMMU takes an SVA domain) and planted bugs.
 */
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/iommu.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/slab.h>

#define MAX_PASIDS 64

static int allocs = 8, frees = 5;
module_param(allocs, int, 0444);
MODULE_PARM_DESC(allocs, "PASIDs to allocate at load (at most 64)");
module_param(frees, int, 0444);
MODULE_PARM_DESC(frees, "of those, how many to free at once (the rest stay allocated until unload)");

static struct device dev;
static struct dev_iommu param = { .max_pasids = 1U << 20 };
static ioasid_t pasids[MAX_PASIDS];
static int n_alloc, n_free, held_from;
static struct dentry *dir;

static void release(struct device *d) { }

static int state_show(struct seq_file *m, void *unused)
{
	seq_printf(m, "{\"device\":\"%s\",\"allocated\":[", dev_name(&dev));
	for (int i = 0; i < n_alloc; i++)
		seq_printf(m, "%s%u", i ? "," : "", pasids[i]);
	seq_puts(m, "],\"held\":[");
	for (int i = held_from; i < n_alloc; i++)
		seq_printf(m, "%s%u", i > held_from ? "," : "", pasids[i]);
	seq_printf(m, "],\"allocs\":%d,\"frees\":%d}\n", n_alloc, n_free);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(state);

static int __init pasidlab_init(void)
{
	int ret;

	device_initialize(&dev);
	dev.release = release;
	dev_set_name(&dev, "pasidlab0");
	ret = device_add(&dev);
	if (ret) {
		put_device(&dev);
		return ret;
	}
	mutex_init(&param.lock);
	dev.iommu = &param;
	for (n_alloc = 0; n_alloc < min(allocs, MAX_PASIDS); n_alloc++) {
		pasids[n_alloc] = iommu_alloc_global_pasid(&dev);
		if (pasids[n_alloc] == IOMMU_PASID_INVALID)
			break;
	}
	for (held_from = 0; held_from < min(frees, n_alloc); held_from++, n_free++)
		iommu_free_global_pasid(pasids[held_from]);
	dir = debugfs_create_dir("pasidlab", NULL);
	debugfs_create_file("state", 0444, dir, NULL, &state_fops);
	return 0;
}

static void __exit pasidlab_exit(void)
{
	debugfs_remove_recursive(dir);
	for (int i = held_from; i < n_alloc; i++)
		iommu_free_global_pasid(pasids[i]);
	dev.iommu = NULL;
	device_del(&dev);
	put_device(&dev);
}

module_init(pasidlab_init);
module_exit(pasidlab_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("PASID Explorer lab: the global PASID allocator, driven");
