/* PASID Explorer's live capture: tracepoints only, so it runs under kernel lockdown too.
 *
 *  - syscalls:sys_enter/exit_ioctl, filtered in the kernel to iommufd and VFIO-cdev commands: the argument struct
 *    is copied at entry and again at return (for the out_* values), one record per completed call;
 *  - reads and writes on iommufd fault-queue fds (learned from IOMMU_FAULT_QUEUE_ALLOC's out_fault_fd): the page
 *    faults user space (a VMM) receives and the page responses it sends back;
 *  - sched:sched_process_exit for processes seen doing this work (or the --pid target): their mm goes away;
 *  - iommu:* and, where the kernel has them, the Intel VT-d tracepoints and the vendor-tree (never mainline)
 *    iommu:dev_fault/dev_page_response (HAVE_TP_* flags).
 *
 * Compiled by probes/loader.py after common.bpf.c, with -D flags for the tracepoints this kernel has. */

/* config[CFG_FAULT_FDS]: any fault fd known (fast path). The process filter is TGID_FILTER (0: all), compiled in
 * rather than written to a map after loading: bcc attaches tracepoints as it loads, and a map written afterwards
 * let other processes' calls in meanwhile. */
BPF_ARRAY(config, u64, 4);
#define CFG_FAULT_FDS 1

/* Processes that did iommufd/VFIO work: their exit is reported. */
BPF_TABLE("lru_hash", u32, u8, seen, 10240);

/* iommufd fault-queue fds by (tgid, fd) -> fault object id. */
struct fdkey {
    u32 tgid;
    s32 fd;
};
BPF_TABLE("lru_hash", struct fdkey, u32, fault_fds, 4096);

static __always_inline u64 cfg(int i)
{
    u64 *v = config.lookup(&i);
    return v ? *v : 0;
}

static __always_inline int wanted(u32 tgid)
{
    return TGID_FILTER == 0 || TGID_FILTER == tgid;
}

/* Copy a user struct that begins with its own u32 size: at most TEXT_BYTES, never past its size. */
static __always_inline u32 copy_sized(u8 *dst, u64 uptr)
{
    u32 size = 0;
    if (bpf_probe_read_user(&size, sizeof(size), (void *)uptr))
        return 0;
    u32 n = size;
    if (n > TEXT_BYTES)
        n = TEXT_BYTES;
    if (n < 4)
        n = 4;
    if (bpf_probe_read_user(dst, n & 0x3f, (void *)uptr))
        return 0;
    return n;
}

static __always_inline u32 copy_user(u8 *dst, u64 uptr, s64 len)
{
    u32 n = len > TEXT_BYTES ? TEXT_BYTES : (len < 0 ? 0 : (u32)len);
    if (n == 0 || bpf_probe_read_user(dst, n & 0x3f, (void *)uptr))
        return 0;
    return n;
}

TRACEPOINT_PROBE(syscalls, sys_enter_ioctl)
{
    u32 cmd = args->cmd;
    u32 nr = cmd & 0xff;
    if ((cmd >> 8) != 0x3b || (nr < 0x80 && (nr < VFIO_BASE || nr >= VFIO_BASE + 32 ||
                                              !((VFIO_TRACKED >> (nr - VFIO_BASE)) & 1))))
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    if (!wanted(id >> 32))
        return 0;
    u32 tid = (u32)id;
    struct call c = {};
    c.ts = bpf_ktime_get_ns();
    c.uptr = args->arg;
    c.type = EV_IOCTL;
    c.cmd = cmd;
    c.fd = args->fd;
    c.n_in = copy_sized(c.in, c.uptr);
    calls.update(&tid, &c);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_ioctl)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id, tgid = id >> 32;
    struct call *c = calls.lookup(&tid);
    if (!c || c->type != EV_IOCTL)
        return 0;
    if (!seen.lookup(&tgid)) {  /* a lookup is cheaper than an LRU update on every call */
        u8 one = 1;
        seen.update(&tgid, &one);
    }
    count_event(EV_IOCTL, c->cmd, tgid, 0xffffffff, 0);
    struct rec *r = new_rec(EV_IOCTL);
    if (r) {
        r->ts_start = c->ts;
        r->cmd = c->cmd;
        r->fd = c->fd;
        r->ret = args->ret;
        r->a = c->uptr;
        r->n_in = c->n_in;
        __builtin_memcpy(r->in, c->in, TEXT_BYTES);
        if (args->ret == 0 && c->n_in)
            r->n_out = copy_sized(r->out, c->uptr);
        if (c->cmd == IOMMU_FAULT_QUEUE_ALLOC && args->ret == 0 && r->n_out >= 16) {
            struct fdkey k = {tgid, *(s32 *)(r->out + 12)};
            u32 fault_id = *(u32 *)(r->out + 8);
            fault_fds.update(&k, &fault_id);
            int i = CFG_FAULT_FDS;
            u64 yes = 1;
            config.update(&i, &yes);
        }
        submit(r);
    }
    calls.delete(&tid);
    return 0;
}

/* -- iommufd fault queues: page faults read by user space, page responses written back ------------------------- */
static __always_inline int fault_fd_io(u32 type, s32 fd, u64 buf)
{
    if (!cfg(CFG_FAULT_FDS))
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct fdkey k = {id >> 32, fd};
    u32 *fault_id = fault_fds.lookup(&k);
    if (!fault_id)
        return 0;
    u32 tid = (u32)id;
    struct call c = {};
    c.ts = bpf_ktime_get_ns();
    c.uptr = buf;
    c.type = type;
    c.cmd = *fault_id;
    c.fd = fd;
    calls.update(&tid, &c);
    return 0;
}

/* A read returns page faults (40-byte struct iommu_hwpt_pgfault), a write carries responses (8-byte struct
 * iommu_hwpt_page_response). Each record takes `chunk` bytes, a whole number of entries (in: the first 48, out:
 * the rest), at most FAULT_RECS_PER_IO records a call; r->ret keeps the call's full byte count. */
static __always_inline int fault_fd_done(u32 type, s64 ret, s64 chunk)
{
    if (!cfg(CFG_FAULT_FDS))  /* every read and write on the host passes here: leave at once */
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct call *c = calls.lookup(&tid);
    if (!c || c->type != type)
        return 0;
    count_event(type, c->cmd, id >> 32, 0xffffffff, 0);
    u64 uptr = c->uptr;
    #pragma unroll
    for (int i = 0; i < FAULT_RECS_PER_IO; i++) {
        s64 off = (s64)i * chunk;
        if (i > 0 && off >= ret)
            break;
        struct rec *r = new_rec(type);
        if (!r)
            break;
        r->ts_start = c->ts;
        r->cmd = c->cmd;
        r->fd = c->fd;
        r->ret = ret;
        r->b = i;
        if (ret > 0) {
            s64 left = ret - off;
            r->n_in = copy_user(r->in, uptr + off, left);
            left -= TEXT_BYTES;
            r->n_out = copy_user(r->out, uptr + off + TEXT_BYTES, left < chunk - TEXT_BYTES ? left : chunk - TEXT_BYTES);
        }
        submit(r);
    }
    calls.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_read) { return fault_fd_io(EV_FAULT_READ, args->fd, (u64)args->buf); }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { return fault_fd_done(EV_FAULT_READ, args->ret, FAULT_READ_CHUNK); }
TRACEPOINT_PROBE(syscalls, sys_enter_write) { return fault_fd_io(EV_FAULT_WRITE, args->fd, (u64)args->buf); }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return fault_fd_done(EV_FAULT_WRITE, args->ret, FAULT_WRITE_CHUNK); }

TRACEPOINT_PROBE(syscalls, sys_enter_close)
{
    if (!cfg(CFG_FAULT_FDS))
        return 0;
    struct fdkey k = {bpf_get_current_pid_tgid() >> 32, args->fd};
    fault_fds.delete(&k);
    return 0;
}

/* -- process exit: the mm of a process that did PASID work goes away ------------------------------------------- */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
#ifdef HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#elif defined(OFF_TASK_SIGNAL)
    /* do_exit() decrements signal->live before this tracepoint: 0 when the last thread of the process exits, so
     * a main thread leaving by pthread_exit() while others run on is not the process's exit (kernel-review F30) */
    u64 sig = 0;
    int live = 1;
    bpf_probe_read_kernel(&sig, sizeof(sig), (char *)bpf_get_current_task() + OFF_TASK_SIGNAL);
    if (sig)
        bpf_probe_read_kernel(&live, sizeof(live), (char *)sig + OFF_SIGNAL_LIVE);
    if (live != 0)
        return 0;
#else
    if ((u32)id != tgid)
        return 0;
#endif
    if (!seen.lookup(&tgid) && TGID_FILTER != tgid)
        return 0;
    seen.delete(&tgid);
    count_event(EV_EXIT, 0, tgid, 0xffffffff, 0);
    struct rec *r = new_rec(EV_EXIT);
    if (r)
        submit(r);
    return 0;
}

/* -- iommu:* tracepoints --------------------------------------------------------------------------------------- */
#define DATA_LOC(field) ((char *)args + (args->data_loc_##field & 0xFFFF))
#define NO_PASID 0xffffffff

static __always_inline int device_event(u32 type, const void *name, u32 cmd)
{
    struct rec *r = device_rec(type, NO_PASID, name);
    if (r) {
        r->cmd = cmd;
        submit(r);
    }
    return 0;
}

static __always_inline int address_event(u32 type, u64 a, u64 b, u64 c)
{
    struct rec *r = device_rec(type, NO_PASID, 0);
    if (r) {
        r->a = a;
        r->b = b;
        r->c = c;
        submit(r);
    }
    return 0;
}

#ifdef HAVE_TP_iommu__io_page_fault
TRACEPOINT_PROBE(iommu, io_page_fault)
{
    struct rec *r = device_rec(EV_IO_PAGE_FAULT, NO_PASID, DATA_LOC(device));
    if (!r)
        return 0;
    bpf_probe_read_kernel_str(r->out, TEXT_BYTES, DATA_LOC(driver));
    r->n_out = TEXT_BYTES;
    r->a = args->iova;
    r->cmd = args->flags;
    submit(r);
    return 0;
}
#endif

#ifdef HAVE_TP_iommu__add_device_to_group
TRACEPOINT_PROBE(iommu, add_device_to_group) { return device_event(EV_GROUP_ADD, DATA_LOC(device), args->gid); }
#endif

#ifdef HAVE_TP_iommu__remove_device_from_group
TRACEPOINT_PROBE(iommu, remove_device_from_group)
{
    return device_event(EV_GROUP_REMOVE, DATA_LOC(device), args->gid);
}
#endif

#ifdef HAVE_TP_iommu__attach_device_to_domain
TRACEPOINT_PROBE(iommu, attach_device_to_domain) { return device_event(EV_DOMAIN_ATTACH, DATA_LOC(device), 0); }
#endif

#ifdef HAVE_TP_iommu__map
TRACEPOINT_PROBE(iommu, map) { return address_event(EV_MAP, args->iova, args->paddr, args->size); }
#endif

#ifdef HAVE_TP_iommu__unmap
TRACEPOINT_PROBE(iommu, unmap) { return address_event(EV_UNMAP, args->iova, args->size, args->unmapped_size); }
#endif

/* Vendor trees (openEuler OLK-5.10, HiSilicon) carry the unmerged "trace/iommu: Add sva trace events" series. */
#ifdef HAVE_TP_iommu__dev_fault
TRACEPOINT_PROBE(iommu, dev_fault)
{
    struct rec *r = device_rec(EV_DEV_FAULT, args->pasid, DATA_LOC(device));
    if (!r)
        return 0;
    r->cmd = args->type;
    r->fd = args->reason;
    r->a = args->addr;
    r->b = ((u64)args->grpid << 32) | args->flags;
    r->c = ((u64)args->pasid << 32) | args->prot;
    submit(r);
    return 0;
}
#endif

#ifdef HAVE_TP_iommu__dev_page_response
TRACEPOINT_PROBE(iommu, dev_page_response)
{
    struct rec *r = device_rec(EV_DEV_PAGE_RESPONSE, args->pasid, DATA_LOC(device));
    if (!r)
        return 0;
    r->cmd = args->code;
    r->b = args->grpid;
    r->c = args->pasid;
    submit(r);
    return 0;
}
#endif

/* Intel VT-d: raw page-request descriptors, and queued invalidations (page group responses among them). */
#ifdef HAVE_TP_intel_iommu__prq_report
TRACEPOINT_PROBE(intel_iommu, prq_report)
{
    struct rec *r = device_rec(EV_PRQ, (args->dw0 >> 32) & 0xfffff, DATA_LOC(dev));
    if (!r)
        return 0;
    r->a = args->dw0;
    r->b = args->dw1;
    r->c = args->seq;
    submit(r);
    return 0;
}
#endif

#ifdef HAVE_TP_intel_iommu__qi_submit
TRACEPOINT_PROBE(intel_iommu, qi_submit)
{
    if ((args->qw0 & 0xf) != QI_PGRP_RESP_TYPE)
        return 0;  /* only page group responses: the other descriptors are cache invalidations */
    struct rec *r = device_rec(EV_QI_PGRP_RESP, (args->qw0 >> 32) & 0xfffff, 0);
    if (!r)
        return 0;
    bpf_probe_read_kernel_str(r->out, TEXT_BYTES, DATA_LOC(iommu));
    r->n_out = TEXT_BYTES;
    r->a = args->qw0;
    r->b = args->qw1;
    submit(r);
    return 0;
}
#endif
