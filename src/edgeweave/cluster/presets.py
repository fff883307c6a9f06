"""The catalog of device and network presets, each number with its source beside it.

Throughputs are *effective* fp32 rates of a typical inference framework, not peaks: where
a seed paper measured a device, its numbers are fitted first; elsewhere we take a stated
fraction of the vendor's peak and say so. A measured profile (``edgeweave profile``)
replaces them for the devices you really have.
"""

from __future__ import annotations

GB = 1_000_000_000
GIB = 1 << 30

# name: fields of Device (less name / kind), with sources
DEVICES: dict[str, dict[str, float | int]] = {
    # Raspberry Pi 3 Model B: 4x Cortex-A53 @ 1.2 GHz, 1 GB LPDDR2 (DeepThings' nodes, seed 003).
    "rpi3": {
        # a third of rpi4b: the A72 does ~2x the NEON work per clock of the A53 at 1.25x
        # the clock (ARM's published core comparisons); assumed, to be profiled.
        "flops_per_s": 1.3e9,
        "memory_bytes_per_s": 1.5e9,  # LPDDR2-900 32-bit peak 3.6 GB/s; ~40% assumed
        "layer_overhead_s": 2e-4,  # assumed
        "memory_bytes": 1 * GIB,  # 1 GB board (spec sheet)
    },
    # Raspberry Pi 4 Model B: 4x Cortex-A72 @ 1.5 GHz, 4 GB LPDDR4 (seed 001's IoT device).
    "rpi4b": {
        # fitted to seed 001's LO column: AlexNet 406 ms, GoogLeNet 848 ms, ResNet18 871 ms
        # for our 1.43 / 3.02 / 3.64 GFLOPs give 3.5 / 3.6 / 4.2 GFLOP/s.
        "flops_per_s": 3.8e9,
        "memory_bytes_per_s": 4e9,  # LPDDR4-3200 32-bit peak 12.8 GB/s; ~30% assumed
        "layer_overhead_s": 1e-4,  # assumed
        "memory_bytes": 4 * GIB,  # 4 GB model (spec sheet)
    },
    # Jetson Nano: 128-core Maxwell GPU, 472 GFLOPS fp16 peak (NVIDIA), 4 GB shared memory.
    "jetson-nano": {
        "flops_per_s": 70e9,  # 236 GFLOPS fp32 peak x 30% (assumed)
        "memory_bytes_per_s": 15e9,  # 25.6 GB/s peak (NVIDIA) x 60% (assumed)
        "layer_overhead_s": 3e-4,  # kernel launches on a small GPU (assumed)
        "memory_bytes": 4 * GIB,
    },
    # Jetson TX2: 256-core Pascal GPU, 1.33 TFLOPS fp16 peak (NVIDIA), 8 GB (seed 000's devices).
    "jetson-tx2": {
        "flops_per_s": 200e9,  # 665 GFLOPS fp32 peak x 30% (assumed)
        "memory_bytes_per_s": 35e9,  # 59.7 GB/s peak (NVIDIA) x 60% (assumed)
        "layer_overhead_s": 2e-4,  # assumed
        "memory_bytes": 8 * GIB,
    },
    # Edge server of seed 001: i7-8700 (6 cores, 3.2 GHz), GTX 1080, 32 GB RAM.
    "edge-server": {
        "flops_per_s": 2.7e12,  # GTX 1080: 8.87 TFLOPS fp32 peak (NVIDIA) x 30% (assumed)
        "memory_bytes_per_s": 200e9,  # GTX 1080: 320 GB/s peak x 60% (assumed)
        "layer_overhead_s": 5e-5,  # kernel launch (assumed)
        "memory_bytes": 8 * GIB,  # the GPU's 8 GB holds the model (spec sheet)
    },
    # One core of a current x86 CPU with AVX2/FMA: 2 FMA x 8 fp32 x 2 x ~3 GHz = 96 GFLOP/s peak.
    "x86-core": {
        "flops_per_s": 30e9,  # ~30% of peak (assumed); profile this host to replace it
        "memory_bytes_per_s": 10e9,  # one core's share of DDR4 (assumed)
        "layer_overhead_s": 2e-5,  # framework dispatch (assumed)
        "memory_bytes": 4 * GIB,  # assumed budget
    },
}

# name: bandwidth, one-way latency, whether all links of the network share one medium
NETWORKS: dict[str, dict[str, float | bool]] = {
    # Neurosurgeon's measured average uplinks (Kang et al., ASPLOS 2017), which seed 001's
    # RO column fits: 3G 1.1 Mbps, LTE 5.85 Mbps, WiFi 18.88 Mbps.
    "3g": {"bandwidth_bps": 1.1e6, "latency_s": 0.05, "shared": False},  # latency assumed
    "4g": {"bandwidth_bps": 5.85e6, "latency_s": 0.025, "shared": False},  # latency assumed
    # one WiFi cell: every transfer contends for the same air (802.11 is half-duplex)
    "wifi": {"bandwidth_bps": 18.88e6, "latency_s": 0.002, "shared": True},  # latency assumed
    # switched gigabit Ethernet: full rate per pair (IEEE 802.3ab), latency assumed
    "ethernet": {"bandwidth_bps": 1e9, "latency_s": 1e-4, "shared": False},
}
