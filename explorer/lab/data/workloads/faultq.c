// SPDX-License-Identifier: GPL-2.0
/*
 * faultq: real I/O page faults with chosen PASIDs and PRG indexes, through iommufd's selftest mock device.
 *
 * For each of D mock devices: a nest-parent HWPT on an IOAS, a fault queue, a nested HWPT that reports to it,
 * the device moved onto the nested HWPT; then N times IOMMU_TEST_OP_TRIGGER_IOPF (the kernel reports a page
 * request through iommu_report_device_fault), the fault read from the fault fd and answered through it:
 * SUCCESS, or INVALID for every I-th. The last U faults of each device stay unanswered; each of the first C
 * devices is destroyed right after its faults, groups pending (the kernel answers those INVALID itself); the
 * others' stay pending until exit. R responses are then written a second time (the kernel refuses them).
 * -s S first issues S IOMMU_OPTION calls as fast as they go, to see whether the capture keeps up. With -H FILE
 * the program then creates FILE, makes one more call 200 ms later and waits for stdin to close, so that a
 * capture can end while the kernel still holds the unanswered groups.
 *
 * It prints one JSON object: every fault it made and how it was answered, and each ioctl it issued by name,
 * so that a recording can be counted against what really happened. Built against the lab kernel's own uAPI
 * headers (iommufd_test.h from its source tree). -A (6.15+: a PASID-capable mock device) puts the RID on a
 * PASID-compatible paging domain and attaches each device's PASID to the fault-capable nested domain instead
 * (IOMMU_TEST_OP_PASID_ATTACH), replaces it with a second one after the faults, then detaches it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include "iommufd_test.h"

#define MAX_FAULTS 4096
#define MAX_DEVICES 16

struct fault {
	int dev;
	unsigned int pasid, grpid, cookie;
	int code; /* -1: not answered */
};

static struct fault faults[MAX_FAULTS];
static int nfaults;
static int iommufd;
static struct { const char *name; int n; } calls[32];

static void count(const char *name)
{
	int i;

	for (i = 0; calls[i].name; i++)
		if (!strcmp(calls[i].name, name))
			break;
	calls[i].name = name;
	calls[i].n++;
}

static void die(const char *what)
{
	fprintf(stderr, "faultq: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int do_ioctl(unsigned long cmd, void *arg, const char *name)
{
	count(name);
	return ioctl(iommufd, cmd, arg);
}

static void test_cmd(struct iommu_test_cmd *cmd, const char *what)
{
	cmd->size = sizeof(*cmd);
	if (do_ioctl(IOMMU_TEST_CMD, cmd, "IOMMU_TEST_CMD"))
		die(what);
}

struct device {
	unsigned int stdev_id, hwpt_id, idev_id, parent_id, nested_id, fault_id, s2_id, nested2_id;
	int fault_fd;
};

static int pasid_mode; /* -A: the fault-capable domains are attached per PASID, not at the RID */

static unsigned int hwpt_alloc(struct device *d, unsigned int pt_id, unsigned int flags, int nested)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_hwpt_alloc cmd = { .size = sizeof(cmd), .flags = flags, .dev_id = d->idev_id, .pt_id = pt_id };

	if (nested) {
		cmd.data_type = IOMMU_HWPT_DATA_SELFTEST;
		cmd.data_len = sizeof(data);
		cmd.data_uptr = (unsigned long)&data;
	}
	if (flags & IOMMU_HWPT_FAULT_ID_VALID)
		cmd.fault_id = d->fault_id;
	if (do_ioctl(IOMMU_HWPT_ALLOC, &cmd, "IOMMU_HWPT_ALLOC"))
		die("IOMMU_HWPT_ALLOC");
	return cmd.out_hwpt_id;
}

#ifdef MOCK_PASID_WIDTH /* 6.15+: a PASID-capable mock device, IOMMU_TEST_OP_PASID_* */
static void pasid_op(struct device *d, int op, unsigned int pasid, unsigned int pt_id, const char *what)
{
	struct iommu_test_cmd cmd = { .op = op, .id = d->stdev_id };

	cmd.pasid_attach.pasid = pasid; /* pasid_replace and pasid_detach start with the same members */
	cmd.pasid_attach.pt_id = pt_id;
	test_cmd(&cmd, what);
}
#endif

static void make_device(unsigned int ioas_id, struct device *d)
{
	struct iommu_test_cmd mock = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas_id };
	struct iommu_fault_alloc falloc = { .size = sizeof(falloc) };
	struct iommu_test_cmd replace = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE };
	unsigned int fault_flags = IOMMU_HWPT_FAULT_ID_VALID;

#ifdef MOCK_PASID_WIDTH
	if (pasid_mode) {
		mock.op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS;
		mock.mock_domain_flags.dev_flags = MOCK_FLAGS_DEVICE_PASID;
		fault_flags |= IOMMU_HWPT_ALLOC_PASID;
	}
#endif
	test_cmd(&mock, "IOMMU_TEST_OP_MOCK_DOMAIN");
	d->stdev_id = mock.mock_domain.out_stdev_id;
	d->hwpt_id = mock.mock_domain.out_hwpt_id;
	d->idev_id = mock.mock_domain.out_idev_id;
	d->parent_id = hwpt_alloc(d, ioas_id, IOMMU_HWPT_ALLOC_NEST_PARENT, 0);
	if (do_ioctl(IOMMU_FAULT_QUEUE_ALLOC, &falloc, "IOMMU_FAULT_QUEUE_ALLOC"))
		die("IOMMU_FAULT_QUEUE_ALLOC");
	d->fault_id = falloc.out_fault_id;
	d->fault_fd = falloc.out_fault_fd;
	d->nested_id = hwpt_alloc(d, d->parent_id, fault_flags, 1);
	replace.id = d->stdev_id;
	replace.mock_domain_replace.pt_id = d->nested_id;
#ifdef MOCK_PASID_WIDTH
	if (pasid_mode) { /* the RID on a PASID-compatible paging domain; the fault domains go on the PASID */
		d->s2_id = hwpt_alloc(d, ioas_id, IOMMU_HWPT_ALLOC_PASID, 0);
		d->nested2_id = hwpt_alloc(d, d->parent_id, fault_flags, 1);
		replace.mock_domain_replace.pt_id = d->s2_id;
	}
#endif
	test_cmd(&replace, "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE");
}

static struct fault *trigger(struct device *d, int dev, unsigned int pasid, unsigned int grpid)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_TRIGGER_IOPF };
	struct iommu_hwpt_pgfault pgfault;
	struct fault *f = &faults[nfaults++];

	cmd.trigger_iopf.dev_id = d->idev_id;
	cmd.trigger_iopf.pasid = pasid;
	cmd.trigger_iopf.grpid = grpid;
	cmd.trigger_iopf.perm = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;
	cmd.trigger_iopf.addr = 0x100000ULL * (nfaults);
	test_cmd(&cmd, "IOMMU_TEST_OP_TRIGGER_IOPF");
	if (read(d->fault_fd, &pgfault, sizeof(pgfault)) != sizeof(pgfault))
		die("read(fault fd)");
	if (pgfault.grpid != grpid || ((pgfault.flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) ? pgfault.pasid : 0) != pasid) {
		fprintf(stderr, "faultq: read back grpid %u pasid %u, triggered %u %u\n", pgfault.grpid,
			pgfault.pasid, grpid, pasid);
		exit(1);
	}
	*f = (struct fault){ .dev = dev, .pasid = pasid, .grpid = grpid, .cookie = pgfault.cookie, .code = -1 };
	return f;
}

static int respond(struct device *d, struct fault *f, int code)
{
	struct iommu_hwpt_page_response resp = { .cookie = f->cookie, .code = code };

	return write(d->fault_fd, &resp, sizeof(resp)) == sizeof(resp) ? 0 : -errno;
}

static void destroy(unsigned int id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };

	if (do_ioctl(IOMMU_DESTROY, &cmd, "IOMMU_DESTROY"))
		die("IOMMU_DESTROY");
}

int main(int argc, char **argv)
{
	int ndev = 1, n = 10, invalid_every = 0, unanswered = 0, closed = 0, again = 0, flood = 0, opt, i, j;
	const char *hold = NULL;
	unsigned int pasid_base = 0;
	int second_refused = 0;
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	struct device devs[MAX_DEVICES];
	char buf[1];

	while ((opt = getopt(argc, argv, "d:n:i:u:c:p:r:s:H:A")) != -1) {
		switch (opt) {
		case 'd': ndev = atoi(optarg); break;
		case 'n': n = atoi(optarg); break;
		case 'i': invalid_every = atoi(optarg); break;
		case 'u': unanswered = atoi(optarg); break;
		case 'c': closed = atoi(optarg); break;
		case 'p': pasid_base = strtoul(optarg, NULL, 0); break;
		case 'r': again = atoi(optarg); break;
		case 's': flood = atoi(optarg); break;
		case 'H': hold = optarg; break;
		case 'A': pasid_mode = 1; break;
		default:
			fprintf(stderr, "usage: faultq [-d devices] [-n faults] [-i invalid_every] [-u unanswered] "
					"[-c closed] [-p pasid_base] [-r second_responses] [-s flood_calls] [-H ready_file] [-A]\n");
			return 2;
		}
	}
	if (ndev < 1 || ndev > MAX_DEVICES || n < 1 || ndev * n > MAX_FAULTS || unanswered > n || n > 512 ||
	    closed > ndev) {
		fprintf(stderr, "faultq: at most %d devices, 512 faults a device, %d in all\n", MAX_DEVICES, MAX_FAULTS);
		return 2;
	}
#ifndef MOCK_PASID_WIDTH
	if (pasid_mode) {
		fprintf(stderr, "faultq: -A needs a kernel whose selftest mock takes PASIDs (6.15+)\n");
		return 2;
	}
#endif
	if (pasid_mode && !pasid_base) {
		fprintf(stderr, "faultq: -A needs a PASID base (-p): PASID 0 is the RID's\n");
		return 2;
	}
	iommufd = open("/dev/iommu", O_RDWR);
	if (iommufd < 0)
		die("/dev/iommu");
	if (do_ioctl(IOMMU_IOAS_ALLOC, &ioas, "IOMMU_IOAS_ALLOC"))
		die("IOMMU_IOAS_ALLOC");
	for (i = 0; i < flood; i++) { /* a burst of cheap calls as fast as they go: does the capture keep up? */
		struct iommu_option get = { .size = sizeof(get), .option_id = IOMMU_OPTION_RLIMIT_MODE,
					    .op = IOMMU_OPTION_OP_GET };

		if (do_ioctl(IOMMU_OPTION, &get, "IOMMU_OPTION"))
			die("IOMMU_OPTION");
	}
	for (i = 0; i < ndev; i++)
		make_device(ioas.out_ioas_id, &devs[i]);
	for (i = 0; i < ndev; i++) {
#ifdef MOCK_PASID_WIDTH
		if (pasid_mode)
			pasid_op(&devs[i], IOMMU_TEST_OP_PASID_ATTACH, pasid_base + i, devs[i].nested_id,
				 "IOMMU_TEST_OP_PASID_ATTACH");
#endif
		for (j = 0; j < n; j++) {
			/* PASID 0 means "no PASID" to TRIGGER_IOPF: device 0 with base 0 faults without one */
			struct fault *f = trigger(&devs[i], i, pasid_base ? pasid_base + i : 0, j);

			if (j >= n - unanswered)
				continue;
			f->code = invalid_every && j % invalid_every == invalid_every - 1 ? IOMMUFD_PAGE_RESP_INVALID
											   : IOMMUFD_PAGE_RESP_SUCCESS;
			errno = -respond(&devs[i], f, f->code);
			if (errno)
				die("write(fault fd)");
		}
#ifdef MOCK_PASID_WIDTH
		if (pasid_mode) { /* the PASID moves to a second fault-capable domain, then goes */
			pasid_op(&devs[i], IOMMU_TEST_OP_PASID_REPLACE, pasid_base + i, devs[i].nested2_id,
				 "IOMMU_TEST_OP_PASID_REPLACE");
			pasid_op(&devs[i], IOMMU_TEST_OP_PASID_DETACH, pasid_base + i, 0, "IOMMU_TEST_OP_PASID_DETACH");
		}
#endif
		if (i < closed) { /* at once, with its groups pending: the kernel answers them INVALID */
			destroy(devs[i].stdev_id);
			for (j = 0; j < nfaults; j++)
				if (faults[j].dev == i && faults[j].code < 0)
					faults[j].code = 100 + IOMMUFD_PAGE_RESP_INVALID; /* 100+: by the kernel */
		}
	}
	for (i = 0; i < nfaults && again > 0; i++) {
		struct fault *f = &faults[i];

		if (f->code >= 0 && f->code < 100 && respond(&devs[f->dev], f, f->code) == -EINVAL) {
			second_refused++;
			again--;
		}
	}
	if (hold) { /* say so, then show time passing with the groups still held: one more call 200 ms later */
		struct iommu_option get = { .size = sizeof(get), .option_id = IOMMU_OPTION_RLIMIT_MODE,
					    .op = IOMMU_OPTION_OP_GET };

		close(open(hold, O_CREAT | O_WRONLY, 0644));
		usleep(200000);
		if (do_ioctl(IOMMU_OPTION, &get, "IOMMU_OPTION"))
			die("IOMMU_OPTION");
	}
	printf("{\"faults\": [");
	for (i = 0; i < nfaults; i++)
		printf("%s{\"dev\": %d, \"pasid\": %u, \"grpid\": %u, \"cookie\": %u, \"code\": %d}", i ? ", " : "",
		       faults[i].dev, faults[i].pasid, faults[i].grpid, faults[i].cookie, faults[i].code);
	printf("], \"second_refused\": %d, \"pasid_attach\": %s, \"devices\": [", second_refused,
	       pasid_mode ? "true" : "false");
	for (i = 0; i < ndev; i++)
		printf("%s{\"idev_id\": %u, \"stdev_id\": %u, \"fault_id\": %u, \"closed\": %s}", i ? ", " : "",
		       devs[i].idev_id, devs[i].stdev_id, devs[i].fault_id, i < closed ? "true" : "false");
	printf("], \"ioctls\": {");
	for (i = 0; calls[i].name; i++)
		printf("%s\"%s\": %d", i ? ", " : "", calls[i].name, calls[i].n);
	printf("}}\n");
	fflush(stdout);
	while (hold && read(0, buf, 1) > 0)
		;
	return 0;
}
