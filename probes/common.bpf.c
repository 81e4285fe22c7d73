/* What every PASID Explorer probe shares: the ring buffer, the one record written to it, loss and count maps.
 *
 * The loader compiles this file followed by the probe programs as one text (bcc rewrites map calls only in its
 * main text, not in #included files). The record has a fixed size, so that user space decodes a whole batch at
 * once; probes/record.py mirrors it and is checked against bcc's view of it at load time. Event numbers (EV_*),
 * sizes and feature flags come from Python as -D flags. */
#include <uapi/linux/ptrace.h>

#define TEXT_BYTES 48

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

struct rec {
    u64 ts;             /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when it happened; ioctl: at return */
    u64 ts_start;       /* ioctl / fault-fd I/O: at entry */
    u32 type;           /* EV_* */
    u32 cpu;
    u32 pid;            /* thread id */
    u32 tgid;           /* process id */
    char comm[16];
    u32 cmd;            /* ioctl command; tracepoint: group id / flags / count */
    s32 fd;
    s64 ret;            /* return value (negative errno) */
    u64 a;              /* kind-specific: iova, addr, mm, domain, ... */
    u64 b;
    u64 c;
    u32 n_in;           /* bytes valid in `in` */
    u32 n_out;          /* bytes valid in `out` */
    u8 in[TEXT_BYTES];  /* ioctl argument struct at entry; device name */
    u8 out[TEXT_BYTES]; /* ioctl argument struct at exit; driver / iommu name */
};

/* Never written: it lets the loader compare bcc's view of struct rec with probes/record.py. */
BPF_ARRAY(rec_layout, struct rec, 1);

/* A call in flight, from sys_enter to sys_exit, by thread id (LRU: a thread killed inside a call leaves no leak). The
 * kernel-function probes read it too: a page response made inside a write() on a fault-queue fd is the user's. */
struct call {
    u64 ts;
    u64 uptr;
    u32 type;
    u32 cmd;
    s32 fd;
    u32 n_in;
    u8 in[TEXT_BYTES];
};
BPF_TABLE("lru_hash", u32, struct call, calls, 10240);

/* A ring buffer record whose reservation failed is counted here, per CPU, and reported as a `lost` event. */
BPF_PERCPU_ARRAY(lost, u64, 1);

/* Exact per-(event, command or device, PASID, process) counts, kept in the kernel: they stay exact when a storm
 * overflows the ring buffer and details are dropped. */
struct agg_key {
    u32 type;
    u32 cmd;
    u32 tgid;
    u32 pasid;          /* 0xffffffff: none */
    char dev[32];
};
BPF_HASH(counts, struct agg_key, u64, 16384);

/* Events that found the counts table full, per CPU: reported, so that a count is never silently short. */
BPF_PERCPU_ARRAY(counts_missed, u64, 1);

static __always_inline void count_event(u32 type, u32 cmd, u32 tgid, u32 pasid, const char *dev)
{
    struct agg_key k = {};
    k.type = type;
    k.cmd = cmd;
    k.tgid = tgid;
    k.pasid = pasid;
    if (dev)
        __builtin_memcpy(k.dev, dev, sizeof(k.dev));
    u64 *v = counts.lookup(&k);
    if (!v) {
        u64 zero = 0;
        counts.insert(&k, &zero);  /* fails harmlessly when another CPU got there first */
        v = counts.lookup(&k);
        if (!v) {  /* table full: sized for far more keys than a host has, but counted if it happens */
            int zero = 0;
            u64 *missed = counts_missed.lookup(&zero);
            if (missed)
                __sync_fetch_and_add(missed, 1);
            return;
        }
    }
    __sync_fetch_and_add(v, 1);
}

static __always_inline struct rec *new_rec(u32 type)
{
    struct rec *r = events.ringbuf_reserve(sizeof(struct rec));
    if (!r) {
        int zero = 0;
        u64 *n = lost.lookup(&zero);
        if (n)
            __sync_fetch_and_add(n, 1);
        return 0;
    }
    u64 id = bpf_get_current_pid_tgid();
    r->ts = bpf_ktime_get_ns();
    r->ts_start = 0;
    r->type = type;
    r->cpu = bpf_get_smp_processor_id();
    r->pid = (u32)id;
    r->tgid = id >> 32;
    bpf_get_current_comm(&r->comm, sizeof(r->comm));
    r->cmd = 0;
    r->fd = -1;
    r->ret = 0;
    r->a = 0;
    r->b = 0;
    r->c = 0;
    r->n_in = 0;
    r->n_out = 0;
    return r;
}

/* A counted record about a device, named by the kernel string at `name` (NULL: none). */
static __always_inline struct rec *device_rec(u32 type, u32 pasid, const void *name)
{
    u8 dev[TEXT_BYTES] = {};
    if (name)
        bpf_probe_read_kernel_str(dev, TEXT_BYTES, name);
    count_event(type, 0, 0, pasid, (const char *)dev);
    struct rec *r = new_rec(type);
    if (r && dev[0]) {
        __builtin_memcpy(r->in, dev, TEXT_BYTES);
        r->n_in = TEXT_BYTES;
    }
    return r;
}

/* Wake the reader only every WAKEUP_EVERY records a CPU: it polls on a short timer anyway, so under a storm it
 * drains big batches instead of waking once per event. (bcc 0.26 cannot call bpf_ringbuf_query.) */
BPF_PERCPU_ARRAY(since_wakeup, u32, 1);

static __always_inline void submit(struct rec *r)
{
    int zero = 0;
    u64 flags = BPF_RB_NO_WAKEUP;
    u32 *n = since_wakeup.lookup(&zero);
    if (n && ++*n >= WAKEUP_EVERY) {
        *n = 0;
        flags = BPF_RB_FORCE_WAKEUP;
    }
    events.ringbuf_submit(r, flags);
}
