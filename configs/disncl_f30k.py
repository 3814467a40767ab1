"""DisNCL on f30k precomputed features: configs/ncr_f30k.py's data, schedule and variants
with the DisNCL objective (docs/disncl.md). MII and MEI codes 256-d on the 1024-d backbone.

  python train.py --config=configs/disncl_f30k.py --config.data.root=/data \
      --workdir=runs/disncl_f30k
"""

from configs import ncr_f30k


def get_config(arg=None):
    arg = f"{arg},method=disncl" if arg else "method=disncl"
    config = ncr_f30k.get_config(arg)
    # The step's temporaries reused without page faults (docs/performance.md, "DisNCL step").
    config.host_allocator = "keep"
    return config
