"""NCR-style training on Flickr30K precomputed features (a local copy; nothing is fetched).

  python train.py --config=configs/ncr_f30k.py --config.data.root=/data --workdir=runs/ncr_f30k

`/data` holds `f30k_precomp/{train,dev,test}_ims.npy` (N x 36 x 2048, memory-mapped),
`{split}_caps.txt` and `vocab/f30k_precomp_vocab.json` (the SCAN/NCR layout). NCR's recipe:
batch 128, Adam 2e-4, grad-clip 2, margin 0.2, embeddings 1024, word vectors 300; 5 warm-up
epochs then 40 co-training epochs, lr x0.1 after 30; caption-level noise (`:noise=0.2|0.4|0.6`,
`:convention=image` for DECL/RCL-style image-level noise; `--config.data.noise.file=` to reuse a
published index file). NCR's reported F30K 20% rSum is about 496.7 (with SGR similarity; this
recipe uses cosine of pooled codes, so expect less).
"""

from configs.common import parse_arg
from configs.retrieval_common import family_schedule, published_data, retrieval_config


def get_config(arg=None):
    a = parse_arg(arg, method="ncr", noise=0.2, convention="caption")
    config = retrieval_config(a.method)
    published_data(config, "f30k")
    config.data.noise.ratio = a.noise
    config.data.noise.convention = a.convention
    family_schedule(config, "f30k", warmup=5, epochs=40, lr_update=30)
    return config
