"""Live capture with eBPF (bcc): BPF C programs (*.bpf.c) beside the Python that loads, drains and decodes them.

Only `loader` imports bcc, lazily, with a plain error naming the package when it is missing; everything else
(decoding, capability rules, BTF offsets, the ring-buffer reader) runs and is tested without bcc or root.
"""
