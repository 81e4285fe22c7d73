// SPDX-License-Identifier: GPL-2.0
/*
 * libiocount: an LD_PRELOAD tally of what a program (the kernel's iommufd selftest) asked iommufd to do, counted
 * in user space, apart from the capture, so a lab test can hold the recording to it.
 *
 * It counts every ioctl of type ';' (iommufd and VFIO) by number and outcome, IOMMU_TEST_CMD by op and outcome,
 * the PASID and group of each TRIGGER_IOPF that succeeded, and the page faults read from and responses written
 * to iommufd fault-queue fds ("anon_inode:[iommufd-pgfault]"), by PASID, group and code. The selftest harness
 * forks a child per test, so the tallies live in one shared anonymous mapping made before the first fork; the
 * process that loaded the library first writes them as JSON to $IOCOUNT_OUT when it exits.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/iommufd.h>
#include "iommufd_test.h"

#define MAX_OPS 64
#define MAX_RECS 4096

struct rec {
	uint32_t pasid, grpid, code;
};

struct tally {
	uint64_t ioctl[256][2]; /* [nr][0: returned 0, 1: failed] */
	uint64_t test_op[MAX_OPS][2];
	uint64_t n_trigger, n_fault, n_response;
	struct rec trigger[MAX_RECS], fault[MAX_RECS], response[MAX_RECS];
};

static struct tally *t;
static pid_t owner;
static int (*real_ioctl)(int, unsigned long, ...);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);

__attribute__((constructor)) static void start(void)
{
	real_ioctl = dlsym(RTLD_NEXT, "ioctl");
	real_read = dlsym(RTLD_NEXT, "read");
	real_write = dlsym(RTLD_NEXT, "write");
	void *m = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m != MAP_FAILED) {
		t = m;
		owner = getpid();
	}
}

static void add(struct rec *recs, uint64_t *n, uint32_t pasid, uint32_t grpid, uint32_t code)
{
	uint64_t i = __atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
	if (i < MAX_RECS)
		recs[i] = (struct rec){pasid, grpid, code};
}

int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	int ret = real_ioctl(fd, request, arg);
	if (t && _IOC_TYPE(request) == IOMMUFD_TYPE) {
		int failed = ret != 0;
		__atomic_fetch_add(&t->ioctl[_IOC_NR(request)][failed], 1, __ATOMIC_RELAXED);
		if (_IOC_NR(request) == _IOC_NR(IOMMU_TEST_CMD) && arg) {
			struct iommu_test_cmd *cmd = arg;
			if (cmd->op < MAX_OPS)
				__atomic_fetch_add(&t->test_op[cmd->op][failed], 1, __ATOMIC_RELAXED);
			if (cmd->op == IOMMU_TEST_OP_TRIGGER_IOPF && !failed)
				add(t->trigger, &t->n_trigger, cmd->trigger_iopf.pasid, cmd->trigger_iopf.grpid, 0);
		}
	}
	return ret;
}

static int is_fault_fd(int fd)
{
	char path[64], link[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return 0;
	link[n] = 0;
	return strcmp(link, "anon_inode:[iommufd-pgfault]") == 0;
}

ssize_t read(int fd, void *buf, size_t count)
{
	ssize_t ret = real_read(fd, buf, count);
	if (t && ret >= (ssize_t)sizeof(struct iommu_hwpt_pgfault) && is_fault_fd(fd)) {
		struct iommu_hwpt_pgfault *f = buf;
		for (ssize_t i = 0; i < ret / (ssize_t)sizeof(*f); i++)
			add(t->fault, &t->n_fault, f[i].pasid, f[i].grpid, 0);
	}
	return ret;
}

ssize_t write(int fd, const void *buf, size_t count)
{
	ssize_t ret = real_write(fd, buf, count);
	if (t && ret >= (ssize_t)sizeof(struct iommu_hwpt_page_response) && is_fault_fd(fd)) {
		const struct iommu_hwpt_page_response *r = buf;
		for (ssize_t i = 0; i < ret / (ssize_t)sizeof(*r); i++)
			add(t->response, &t->n_response, 0, 0, r[i].code);
	}
	return ret;
}

static void recs(FILE *out, const char *name, const struct rec *r, uint64_t n, int code)
{
	fprintf(out, ",\"%s\":[", name);
	for (uint64_t i = 0; i < n && i < MAX_RECS; i++)
		if (code)
			fprintf(out, "%s{\"code\":%u}", i ? "," : "", r[i].code);
		else
			fprintf(out, "%s{\"pasid\":%u,\"grpid\":%u}", i ? "," : "", r[i].pasid, r[i].grpid);
	fprintf(out, "],\"%s_total\":%llu", name, (unsigned long long)n);
}

__attribute__((destructor)) static void finish(void)
{
	const char *where = getenv("IOCOUNT_OUT");
	if (!t || getpid() != owner || !where)
		return;
	FILE *out = fopen(where, "w");
	if (!out)
		return;
	fprintf(out, "{\"ioctls\":{");
	int first = 1;
	for (int nr = 0; nr < 256; nr++)
		if (t->ioctl[nr][0] || t->ioctl[nr][1]) {
			fprintf(out, "%s\"%d\":[%llu,%llu]", first ? "" : ",", nr, (unsigned long long)t->ioctl[nr][0],
				(unsigned long long)t->ioctl[nr][1]);
			first = 0;
		}
	fprintf(out, "},\"test_ops\":{");
	first = 1;
	for (int op = 0; op < MAX_OPS; op++)
		if (t->test_op[op][0] || t->test_op[op][1]) {
			fprintf(out, "%s\"%d\":[%llu,%llu]", first ? "" : ",", op, (unsigned long long)t->test_op[op][0],
				(unsigned long long)t->test_op[op][1]);
			first = 0;
		}
	fprintf(out, "}");
	recs(out, "triggers", t->trigger, t->n_trigger, 0);
	recs(out, "faults", t->fault, t->n_fault, 0);
	recs(out, "responses", t->response, t->n_response, 1);
	fprintf(out, "}\n");
	fclose(out);
}
