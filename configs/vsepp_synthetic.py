"""vsepp baseline on the offline scenes benchmark: configs/ncr_synthetic.py with method=vsepp.

  python train.py --config=configs/vsepp_synthetic.py --workdir=runs/vsepp

Same data keys and variants as ncr_synthetic.py (`:smoke`, `:noise=`, `:convention=`).
"""

from configs import ncr_synthetic


def get_config(arg=None):
    arg = f"{arg},method=vsepp" if arg else "method=vsepp"
    return ncr_synthetic.get_config(arg)
