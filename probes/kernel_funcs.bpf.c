/* Kernel functions of the PASID machinery, compiled after common.bpf.c only for the hooks the host permits.
 *
 * For each hook the loader defines HOOK_<function>; USE_FENTRY picks fentry/fexit (BTF trampolines), otherwise
 * the kp_/kr_ programs are attached as kprobes/kretprobes. Struct members are read through OFF_* byte offsets
 * that probes/kernel_funcs.py takes from the running kernel's BTF, never from compiled-in headers, and fexit
 * programs list NARGS_<function> arguments, as BTF says the function takes. Arguments arrive as u64 words. */

#define INVALID_PASID 0xffffffff

/* mm pointer -> the name events give it (see mm_key), learned when a process binds its own mm: unbinds and drops
 * that happen later, from another context (an exiting task, a workqueue), still name the mm the simulator knows.
 * tgid -> the mm named by that tgid. Both forget an mm at mm_pasid_drop() (its __mmdrop(), 6.4+); before 6.4 no
 * hook sees an mm go, so they fill up over a long capture. They are plain hashes, never LRU: an LRU may evict a
 * live mm's name (its per-CPU free lists take entries long before it is full, on a host of many CPUs), and a later
 * unbind named otherwise would be a false finding. A full table names new mms as before the tables (their tgid). */
BPF_HASH(mm_owner, u64, u64, 65536);
BPF_HASH(tgid_mm, u32, u64, 65536);
/* Thread -> mm while it is inside iommu_sva_bind_device: a global PASID allocated then is the mm's SVA PASID. */
BPF_HASH(in_bind, u32, u64, 10240);

struct kargs {
    u64 a[4];
};
/* kprobe variant: arguments saved at entry for the matching kretprobe, by (thread, hook). */
BPF_HASH(kstash, u64, struct kargs, 10240);

static __always_inline u64 kread(u64 addr)
{
    u64 v = 0;
    if (addr)
        bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

static __always_inline u32 kread32(u64 addr)
{
    u32 v = 0;
    if (addr)
        bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

static __always_inline u32 mm_pasid(u64 mm)
{
    if (!mm)
        return INVALID_PASID;
#if defined(HAVE_IOMMU_MM)
    u64 iommu_mm = kread(mm + OFF_MM_IOMMU_MM);
    return iommu_mm ? kread32(iommu_mm + OFF_IOMMU_MM_PASID) : INVALID_PASID;
#elif defined(HAVE_MM_PASID)
    u32 pasid = kread32(mm + OFF_MM_PASID);
    return pasid ? pasid : INVALID_PASID;
#else
    return INVALID_PASID;
#endif
}

/* The simulator names an mm by its process: the caller's tgid when it is the caller's own mm, and no other live mm
 * has that name already; else by its pointer. A process that execs gets a new mm (fs/exec.c exec_mmap()) while the
 * old one, and its PASID, live on as long as a bind holds it (an SVA fd kept across the exec: the SVA domain's
 * mmgrab(), iommu-sva.c; the PASID goes in mm_pasid_drop(), from __mmdrop(), kernel/fork.c): the new mm's own
 * PASID must not be taken for a second PASID of the old one. So must a new process that reuses a live mm's tgid. */
static __always_inline u64 mm_key(u64 mm)
{
    u64 *known = mm_owner.lookup(&mm);
    if (known)
        return *known;
#ifdef OFF_TASK_MM
    u64 task = (u64)bpf_get_current_task();
    if (mm && kread(task + OFF_TASK_MM) == mm) {
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        u64 *named = tgid_mm.lookup(&tgid);
        if (named && *named != mm) {
            mm_owner.update(&mm, &mm);
            return mm;
        }
        u64 key = tgid;
        tgid_mm.update(&tgid, &mm);
        mm_owner.update(&mm, &key);
        return key;
    }
#endif
    return mm;
}

/* An mm is gone (__mmdrop): its name is free for the next mm of its tgid. (Its name is read from the table: an
 * fentry program's mm is a typed pointer, which the verifier will not let be cut to 32 bits.) */
static __always_inline void forget_mm(u64 mm)
{
    u64 *known = mm_owner.lookup(&mm);
    if (!known)
        return;
    u32 tgid = *known;  /* (a name that is a pointer names no tgid's mm: the check below tells) */
    u64 *named = tgid_mm.lookup(&tgid);
    if (named && *named == mm)
        tgid_mm.delete(&tgid);
    mm_owner.delete(&mm);
}

static __always_inline u64 stash_key(u32 hook)
{
    return (bpf_get_current_pid_tgid() << 8) | hook;
}

static __always_inline int stash(u32 hook, u64 a0, u64 a1, u64 a2, u64 a3)
{
    u64 k = stash_key(hook);
    struct kargs v = {{a0, a1, a2, a3}};
    kstash.update(&k, &v);
    return 0;
}

static __always_inline struct kargs *stashed(u32 hook)
{
    u64 k = stash_key(hook);
    return kstash.lookup(&k);
}

static __always_inline void unstash(u32 hook)
{
    u64 k = stash_key(hook);
    kstash.delete(&k);
}

#define ARGS_1 u64 a0
#define ARGS_2 u64 a0, u64 a1
#define ARGS_3 u64 a0, u64 a1, u64 a2
#define ARGS_4 u64 a0, u64 a1, u64 a2, u64 a3
#define ARGS_5 u64 a0, u64 a1, u64 a2, u64 a3, u64 a4
#define PASS_1 a0, 0, 0, 0
#define PASS_2 a0, a1, 0, 0
#define PASS_3 a0, a1, a2, 0
#define PASS_4 a0, a1, a2, a3
#define PASS_5 a0, a1, a2, a3
#define ARGS_(n) ARGS_##n
#define ARGS(n) ARGS_(n)
#define PASS_(n) PASS_##n
#define PASS(n) PASS_(n)

/* ON_ENTRY(fn): calls on_<fn>(a0..a3) when fn is entered. ON_RETURN(fn, id): calls done_<fn>(a0..a3, ret) when
 * it returns (kprobe variant: arguments saved under `id` at entry). */
#ifdef USE_FENTRY
#define ON_ENTRY(fn) \
    KFUNC_PROBE(fn, ARGS(NARGS_##fn)) { return on_##fn(PASS(NARGS_##fn)); }
#define ON_RETURN(fn, id) \
    KRETFUNC_PROBE(fn, ARGS(NARGS_##fn), u64 ret) { return done_##fn(PASS(NARGS_##fn), ret); }
#else
#define ON_ENTRY(fn) \
    int kp_##fn(struct pt_regs *ctx) \
    { return on_##fn(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx), PT_REGS_PARM4(ctx)); }
#define ON_RETURN(fn, id) \
    int kp_##fn(struct pt_regs *ctx) \
    { return stash(id, PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx), PT_REGS_PARM4(ctx)); } \
    int kr_##fn(struct pt_regs *ctx) \
    { \
        struct kargs *k = stashed(id); \
        if (k) { \
            done_##fn(k->a[0], k->a[1], k->a[2], k->a[3], PT_REGS_RC(ctx)); \
            unstash(id); \
        } \
        return 0; \
    }
#endif

/* A counted record for kernel function `type` about `dev` (a struct device *, or 0), with its PASID in cmd. */
static __always_inline struct rec *kfunc_rec(u32 type, u32 pasid, u64 dev)
{
    u64 name = 0;
#ifdef OFF_DEV_NAME
    name = kread(dev ? dev + OFF_DEV_NAME : 0);
#endif
    struct rec *r = device_rec(type, pasid, (const void *)name);
    if (r)
        r->cmd = pasid;
    return r;
}

/* -- the global PASID allocator (6.6+) -------------------------------------------------------------------- */
#ifdef HOOK_iommu_alloc_global_pasid
static __always_inline int done_iommu_alloc_global_pasid(u64 dev, u64 a1, u64 a2, u64 a3, u64 ret)
{
    struct rec *r = kfunc_rec(EV_PASID_ALLOC, (u32)ret, dev);
    if (!r)
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *mm = in_bind.lookup(&tid);
    if (mm) {
        r->a = mm_key(*mm);
        r->b = 1;  /* allocated for an SVA bind: the mm's PASID */
    }
    r->ret = (u32)ret == INVALID_PASID ? -28 : 0;
    submit(r);
    return 0;
}
ON_RETURN(iommu_alloc_global_pasid, 1)
#endif

#ifdef HOOK_iommu_free_global_pasid
static __always_inline int on_iommu_free_global_pasid(u64 pasid, u64 a1, u64 a2, u64 a3)
{
    struct rec *r = kfunc_rec(EV_PASID_FREE, (u32)pasid, 0);
    if (r)
        submit(r);
    return 0;
}
ON_ENTRY(iommu_free_global_pasid)
#endif

/* -- SVA binds ---------------------------------------------------------------------------------------------- */
#ifdef HOOK_iommu_sva_bind_device
static __always_inline int done_iommu_sva_bind_device(u64 dev, u64 mm, u64 a2, u64 a3, u64 ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    in_bind.delete(&tid);
    s64 err = (s64)ret >= -4095 && (s64)ret < 0 ? (s64)ret : 0;  /* IS_ERR() */
    struct rec *r = kfunc_rec(EV_SVA_BIND, err ? INVALID_PASID : mm_pasid(mm), dev);
    if (!r)
        return 0;
    r->a = mm_key(mm);
    r->b = err ? 0 : ret;
    r->ret = err;
    submit(r);
    return 0;
}
#ifdef USE_FENTRY
KFUNC_PROBE(iommu_sva_bind_device, ARGS(NARGS_iommu_sva_bind_device))
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 mm = a1;
    in_bind.update(&tid, &mm);
    return 0;
}
KRETFUNC_PROBE(iommu_sva_bind_device, ARGS(NARGS_iommu_sva_bind_device), u64 ret)
{
    return done_iommu_sva_bind_device(PASS(NARGS_iommu_sva_bind_device), ret);
}
#else
int kp_iommu_sva_bind_device(struct pt_regs *ctx)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 mm = PT_REGS_PARM2(ctx);
    in_bind.update(&tid, &mm);
    return stash(3, PT_REGS_PARM1(ctx), mm, 0, 0);
}
int kr_iommu_sva_bind_device(struct pt_regs *ctx)
{
    struct kargs *k = stashed(3);
    if (k) {
        done_iommu_sva_bind_device(k->a[0], k->a[1], 0, 0, PT_REGS_RC(ctx));
        unstash(3);
    }
    return 0;
}
#endif
#endif

#ifdef HOOK_iommu_sva_unbind_device
static __always_inline int on_iommu_sva_unbind_device(u64 handle, u64 a1, u64 a2, u64 a3)
{
    u64 dev = kread(handle + OFF_SVA_DEV);
    u64 mm = kread(kread(handle + OFF_SVA_DOMAIN) + OFF_DOMAIN_MM);
    struct rec *r = kfunc_rec(EV_SVA_UNBIND, mm_pasid(mm), dev);
    if (!r)
        return 0;
    r->a = mm_key(mm);
    r->b = handle;
    submit(r);
    return 0;
}
ON_ENTRY(iommu_sva_unbind_device)
#endif

/* -- (device, PASID) attachments ---------------------------------------------------------------------------- */
static __always_inline int pasid_domain(u32 type, u64 domain, u64 dev, u64 pasid, s64 ret)
{
    struct rec *r = kfunc_rec(type, (u32)pasid, dev);
    if (!r)
        return 0;
    r->a = domain;
#ifdef OFF_DOMAIN_TYPE
    r->b = kread32(domain + OFF_DOMAIN_TYPE);
#endif
    r->ret = (s32)ret;
    submit(r);
    return 0;
}

#ifdef HOOK_iommu_attach_device_pasid
static __always_inline int done_iommu_attach_device_pasid(u64 domain, u64 dev, u64 pasid, u64 a3, u64 ret)
{
    return pasid_domain(EV_PASID_ATTACH, domain, dev, pasid, ret);
}
ON_RETURN(iommu_attach_device_pasid, 5)
#endif

#ifdef HOOK_iommu_replace_device_pasid
static __always_inline int done_iommu_replace_device_pasid(u64 domain, u64 dev, u64 pasid, u64 a3, u64 ret)
{
    return pasid_domain(EV_PASID_REPLACE, domain, dev, pasid, ret);
}
ON_RETURN(iommu_replace_device_pasid, 6)
#endif

#ifdef HOOK_iommu_detach_device_pasid
static __always_inline int on_iommu_detach_device_pasid(u64 domain, u64 dev, u64 pasid, u64 a3)
{
    return pasid_domain(EV_PASID_DETACH, domain, dev, pasid, 0);
}
ON_ENTRY(iommu_detach_device_pasid)
#endif

/* -- page requests and responses ---------------------------------------------------------------------------- */
#ifdef HOOK_iommu_report_device_fault
static __always_inline int on_iommu_report_device_fault(u64 dev, u64 evt, u64 a2, u64 a3)
{
    if (kread32(evt + OFF_EVT_TYPE) != FAULT_PAGE_REQ)
        return 0;
    struct rec *r = kfunc_rec(EV_REPORT_FAULT, kread32(evt + OFF_EVT_PASID), dev);
    if (!r)
        return 0;
    u32 flags = kread32(evt + OFF_EVT_FLAGS);
    r->fd = kread32(evt + OFF_EVT_GRPID);
    r->a = kread(evt + OFF_EVT_ADDR);
    r->b = flags | ((u64)((flags & NEEDS_PASID_FLAG) != 0) << 32);
    r->c = kread32(evt + OFF_EVT_PERM);
    submit(r);
    return 0;
}
ON_ENTRY(iommu_report_device_fault)
#endif

/* Inside a write() on a fault-queue fd: the process answered. */
static __always_inline u64 in_fault_write(void)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct call *c = calls.lookup(&tid);
    return c && c->type == EV_FAULT_WRITE;
}

#ifdef HOOK_iopf_group_response
static __always_inline int on_iopf_group_response(u64 group, u64 status, u64 a2, u64 a3)
{
    u64 dev = kread(kread(group + OFF_GRP_PARAM) + OFF_PARAM_DEV);
    u32 flags = kread32(group + OFF_GRP_FLAGS);
    u32 pasid = flags & 1 ? kread32(group + OFF_GRP_PASID) : INVALID_PASID;
    struct rec *r = kfunc_rec(EV_PAGE_RESPONSE, pasid, dev);
    if (!r)
        return 0;
    r->fd = kread32(group + OFF_GRP_GRPID);
    r->ret = (u32)status;
    r->b = in_fault_write();
#ifdef OFF_GRP_PENDING
    /* Kernels with the pending check only (6.9 until iopf_group_dequeue()): an empty pending_node means the group
     * was answered already (queue removal), so the call sends nothing (checked under fault_param->lock; read here
     * just before). */
    u64 node = group + OFF_GRP_PENDING;
    r->c = kread(node) == node;
#endif
    submit(r);
    return 0;
}
ON_ENTRY(iopf_group_response)
#endif

/* An IOMMU driver's page_response op, (dev, struct iopf_fault *evt, struct iommu_page_response *msg) since 6.9:
 * every response sent to a device, the core's automatic ones included. */
static __always_inline int driver_page_response(u64 dev, u64 evt, u64 msg, u64 op)
{
#ifdef OFF_DRV_EVT_FLAGS
    u32 pasid = kread32(evt + OFF_DRV_EVT_FLAGS) & 1 ? kread32(msg + OFF_RESP_PASID) : INVALID_PASID;
    struct rec *r = kfunc_rec(EV_DRIVER_PAGE_RESPONSE, pasid, dev);
    if (!r)
        return 0;
    r->fd = kread32(msg + OFF_RESP_GRPID);
    r->ret = kread32(msg + OFF_RESP_CODE);
    r->b = in_fault_write();
    r->a = op;
    submit(r);
#endif
    return 0;
}
/* `op`: the function's place in probes/hooks.py DRIVER_RESPONSE_OPS, so a record names the op that sent it. */
#define DRIVER_PAGE_RESPONSE(fn, op) \
    static __always_inline int on_##fn(u64 dev, u64 evt, u64 msg, u64 a3) \
    { return driver_page_response(dev, evt, msg, op); } \
    ON_ENTRY(fn)
#ifdef HOOK_intel_svm_page_response
DRIVER_PAGE_RESPONSE(intel_svm_page_response, 0)
#endif
#ifdef HOOK_intel_iommu_page_response
DRIVER_PAGE_RESPONSE(intel_iommu_page_response, 1)
#endif
#ifdef HOOK_amd_iommu_page_response
DRIVER_PAGE_RESPONSE(amd_iommu_page_response, 2)
#endif
#ifdef HOOK_arm_smmu_page_response
DRIVER_PAGE_RESPONSE(arm_smmu_page_response, 3)
#endif
#ifdef HOOK_mock_domain_page_response
DRIVER_PAGE_RESPONSE(mock_domain_page_response, 4)
#endif

#ifdef HOOK_iommu_page_response
static __always_inline int on_iommu_page_response(u64 dev, u64 msg, u64 a2, u64 a3)
{
    struct rec *r = kfunc_rec(EV_PAGE_RESPONSE, kread32(msg + OFF_RESP_PASID), dev);
    if (!r)
        return 0;
    r->fd = kread32(msg + OFF_RESP_GRPID);
    r->ret = kread32(msg + OFF_RESP_CODE);
    submit(r);
    return 0;
}
ON_ENTRY(iommu_page_response)
#endif

/* -- an mm's PASID freed with the mm ---------------------------------------------------------------------------- */
#ifdef HOOK_mm_pasid_drop
static __always_inline int on_mm_pasid_drop(u64 mm, u64 a1, u64 a2, u64 a3)
{
    u32 pasid = mm_pasid(mm);
    u64 key = mm_key(mm);
    forget_mm(mm);
    if (pasid == INVALID_PASID)
        return 0;
    struct rec *r = kfunc_rec(EV_MM_PASID_DROP, pasid, 0);
    if (!r)
        return 0;
    r->a = key;
    submit(r);
    return 0;
}
ON_ENTRY(mm_pasid_drop)
#endif

/* -- the 5.x ioasid allocator ----------------------------------------------------------------------------------- */
#ifdef HOOK_ioasid_alloc
static __always_inline int done_ioasid_alloc(u64 set, u64 min, u64 max, u64 private, u64 ret)
{
    struct rec *r = kfunc_rec(EV_IOASID_ALLOC, (u32)ret, 0);
    if (!r)
        return 0;
    r->ret = (u32)ret == INVALID_PASID ? -28 : 0;
    submit(r);
    return 0;
}
ON_RETURN(ioasid_alloc, 12)
#endif

#ifdef HOOK_ioasid_free
static __always_inline int on_ioasid_free(u64 id, u64 a1, u64 a2, u64 a3)
{
    struct rec *r = kfunc_rec(EV_IOASID_FREE, (u32)id, 0);
    if (r)
        submit(r);
    return 0;
}
ON_ENTRY(ioasid_free)
#endif

/* 5.11-5.17: the last reference of an ioasid, dropped at the mm's last unbind; true when it freed the PASID. */
#ifdef HOOK_ioasid_put
static __always_inline int done_ioasid_put(u64 id, u64 a1, u64 a2, u64 a3, u64 ret)
{
    if (!(ret & 1))
        return 0;
    struct rec *r = kfunc_rec(EV_IOASID_FREE, (u32)id, 0);
    if (r)
        submit(r);
    return 0;
}
ON_RETURN(ioasid_put, 13)
#endif
