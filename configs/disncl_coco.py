"""DisNCL on coco precomputed features: configs/ncr_coco.py's data, schedule and variants
with the DisNCL objective (docs/disncl.md). MII and MEI codes 256-d on the 1024-d backbone.

  python train.py --config=configs/disncl_coco.py --config.data.root=/data \
      --workdir=runs/disncl_coco
"""

from configs import ncr_coco


def get_config(arg=None):
    arg = f"{arg},method=disncl" if arg else "method=disncl"
    config = ncr_coco.get_config(arg)
    # The step's temporaries reused without page faults (docs/performance.md, "DisNCL step").
    config.host_allocator = "keep"
    return config
