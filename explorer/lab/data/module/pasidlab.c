// SPDX-License-Identifier: GPL-2.0
/*
 * pasidlab: drives the kernel's PASID allocator, which no selftest reaches. On 6.6+ that is the IOMMU core's
 * global allocator (iommu_alloc_global_pasid / iommu_free_global_pasid, drivers/iommu/iommu.c), for a device of
 * its own that stands for a PASID-capable one (dev->iommu->max_pasids set, no IOMMU behind it: the allocator reads
 * nothing else). Up to 6.3 it is the ioasid allocator (ioasid_alloc(set, min, max, private) / ioasid_free(id),
 * both EXPORT_SYMBOL_GPL in drivers/iommu/ioasid.c, 6.1.192), which takes no device.
 * At load it allocates `allocs` PASIDs and frees the first `frees`; /sys/kernel/debug/pasidlab/state says what it
 * did and what it still holds; unloading frees the rest.
 *
 * Planted bug, on request: `double_frees=K` frees the first K freed PASIDs a second time. The allocator is the
 * only PASID path this module reaches (its device has no IOMMU, so it has no domain to attach and no page-request
 * group to answer), and a second free is what a caller can really do there: 6.6+ ida_free() WARNs "ida_free
 * called for id=N which is not allocated" (lib/idr.c) and frees nothing; 6.1's ioasid_free() prints "Trying to
 * free unknown IOASID" and frees nothing. Had another caller been handed the number in between, the second free
 * would have freed that caller's PASID, unseen by both.
 */
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/iommu.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/version.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 4, 0)
#include <linux/ioasid.h>
#define PASIDLAB_IOASID 1 /* the ioasid allocator (removed in 6.4: 'iommu: Remove ioasid infrastructure') */
#elif LINUX_VERSION_CODE < KERNEL_VERSION(6, 6, 0)
#error "6.4-6.5 keep their PASID allocator (the SVA IDA) private to iommu-sva.c: nothing for a module to drive"
#endif

#define MAX_PASIDS 64

static int allocs = 8, frees = 5, double_frees;
module_param(allocs, int, 0444);
MODULE_PARM_DESC(allocs, "PASIDs to allocate at load (at most 64)");
module_param(frees, int, 0444);
MODULE_PARM_DESC(frees, "of those, how many to free at once (the rest stay allocated until unload)");
module_param(double_frees, int, 0444);
MODULE_PARM_DESC(double_frees, "planted bug: free the first K freed PASIDs again (a double free)");

static ioasid_t pasids[MAX_PASIDS];
static int n_alloc, n_free, n_double, held_from;
static struct dentry *dir;

#ifdef PASIDLAB_IOASID
static DECLARE_IOASID_SET(pasidlab_set);

static int lab_device_init(void) { return 0; }
static void lab_device_exit(void) { }
static const char *lab_device_name(void) { return NULL; }
static ioasid_t lab_alloc(void) { return ioasid_alloc(&pasidlab_set, 1, (1U << 20) - 1, NULL); }
static void lab_free(ioasid_t pasid) { ioasid_free(pasid); }
#define LAB_INVALID INVALID_IOASID
#else
static struct device dev;
static struct dev_iommu param = { .max_pasids = 1U << 20 };

static void release(struct device *d) { }

static int lab_device_init(void)
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
	return 0;
}

static void lab_device_exit(void)
{
	dev.iommu = NULL;
	device_del(&dev);
	put_device(&dev);
}

static const char *lab_device_name(void) { return dev_name(&dev); }
static ioasid_t lab_alloc(void) { return iommu_alloc_global_pasid(&dev); }
static void lab_free(ioasid_t pasid) { iommu_free_global_pasid(pasid); }
#define LAB_INVALID IOMMU_PASID_INVALID
#endif

static void show_list(struct seq_file *m, const char *key, int from, int to)
{
	seq_printf(m, "\"%s\":[", key);
	for (int i = from; i < to; i++)
		seq_printf(m, "%s%u", i > from ? "," : "", pasids[i]);
	seq_puts(m, "],");
}

static int state_show(struct seq_file *m, void *unused)
{
	const char *name = lab_device_name();

	if (name)
		seq_printf(m, "{\"device\":\"%s\",", name);
	else
		seq_puts(m, "{\"device\":null,");
	show_list(m, "allocated", 0, n_alloc);
	show_list(m, "held", held_from, n_alloc);
	show_list(m, "double_freed", 0, n_double);
	seq_printf(m, "\"allocs\":%d,\"frees\":%d}\n", n_alloc, n_free);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(state);

static int __init pasidlab_init(void)
{
	int ret = lab_device_init();

	if (ret)
		return ret;
	for (n_alloc = 0; n_alloc < min(allocs, MAX_PASIDS); n_alloc++) {
		pasids[n_alloc] = lab_alloc();
		if (pasids[n_alloc] == LAB_INVALID)
			break;
	}
	for (held_from = 0; held_from < min(frees, n_alloc); held_from++, n_free++)
		lab_free(pasids[held_from]);
	for (n_double = 0; n_double < min(double_frees, n_free); n_double++)
		lab_free(pasids[n_double]); /* the planted bug */
	dir = debugfs_create_dir("pasidlab", NULL);
	debugfs_create_file("state", 0444, dir, NULL, &state_fops);
	return 0;
}

static void __exit pasidlab_exit(void)
{
	debugfs_remove_recursive(dir);
	for (int i = held_from; i < n_alloc; i++)
		lab_free(pasids[i]);
	lab_device_exit();
}

module_init(pasidlab_init);
module_exit(pasidlab_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("PASID Explorer lab: the kernel's PASID allocator, driven (and misused on request)");
