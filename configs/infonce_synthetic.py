"""infonce baseline on the offline scenes benchmark: configs/ncr_synthetic.py with method=infonce.

  python train.py --config=configs/infonce_synthetic.py --workdir=runs/infonce

Same data keys and variants as ncr_synthetic.py (`:smoke`, `:noise=`, `:convention=`).
"""

from configs import ncr_synthetic


def get_config(arg=None):
    arg = f"{arg},method=infonce" if arg else "method=infonce"
    return ncr_synthetic.get_config(arg)
