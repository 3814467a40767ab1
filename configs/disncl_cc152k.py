"""DisNCL on cc152k precomputed features: configs/ncr_cc152k.py's data, schedule and variants
with the DisNCL objective (docs/disncl.md). MII and MEI codes 256-d on the 1024-d backbone.

  python train.py --config=configs/disncl_cc152k.py --config.data.root=/data \
      --workdir=runs/disncl_cc152k
"""

from configs import ncr_cc152k


def get_config(arg=None):
    arg = f"{arg},method=disncl" if arg else "method=disncl"
    config = ncr_cc152k.get_config(arg)
    # The step's temporaries reused without page faults (docs/performance.md, "DisNCL step").
    config.host_allocator = "keep"
    return config
