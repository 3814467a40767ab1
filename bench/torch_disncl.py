"""DisNCL's step in eager PyTorch: the peer `bench/disncl_step.py` times the JAX step against.

Written the way the field writes it: SCAN/NCR's `EncoderImagePrecomp` (Linear per region, L2,
mean, L2) and `EncoderText` (embedding, `nn.GRU(bidirectional=True)` on a
`pack_padded_sequence`, the two directions averaged, L2 per word, mean over the words, L2),
linear MII/MEI heads, CLUB's `CLUBSample` estimator (two small MLPs, `torch.randperm`
negatives), one optimiser per network with `clip_grad_norm_`, and two co-trained networks
stepped one after the other on one forward pass each. Same maths as
`jaxmr.tasks.retrieval.disncl` (docs/disncl.md) with the defaults there (soft targets, CLUB):

  matching  soft-target two-way cross-entropy of s_v s_t^T / tau
  L_S       clean-weighted symmetric InfoNCE + cond_weight * w ||s_v - s_t||^2
  L_X       -InfoNCE bound of (U x_m) . sg(h_m)
  L_reg     CLUB-sample under q(x|s), q frozen for the encoders
  total     matching + lambda_dis (gamma L_S + (1 - gamma) L_X) + lambda_reg L_reg

Order within a step, as the JAX step: each network's encoder update under q as it is, then
`est_repeats` estimator updates on the detached codes of the same forward pass.

Differences from the field's code, each so the loss equals the library's to float precision:
the GRU's hidden biases `bias_hh` are zero and frozen (Flax's GRU cell has none);
`CLUBSample.learning_loss` is the full Gaussian negative log-likelihood (the reference drops
the factor 1/2 and log 2 pi); the clip and Adam settings are the library's. Used only by the
benchmark, which loads the JAX parameters (`load_jax_params`) and checks the losses.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

LOG_2PI = math.log(2.0 * math.pi)
MODALITIES = ("image", "text")


def l2norm(x, dim=-1, eps=1e-8):
    """The field's `l2norm`: x / (||x|| + eps)."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


class EncoderImagePrecomp(nn.Module):
    def __init__(self, feature_dim, embed_dim):
        super().__init__()
        self.fc = nn.Linear(feature_dim, embed_dim)

    def forward(self, images):
        return l2norm(l2norm(self.fc(images)).mean(dim=1))


class EncoderText(nn.Module):
    def __init__(self, vocab_size, word_dim, embed_dim):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.rnn = nn.GRU(word_dim, embed_dim, batch_first=True, bidirectional=True)
        for name, p in self.rnn.named_parameters():
            if name.startswith("bias_hh"):
                p.requires_grad_(False)
                nn.init.zeros_(p)

    def forward(self, tokens, lengths):
        packed = pack_padded_sequence(
            self.embed(tokens), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)
        half = out.size(2) // 2
        words = l2norm((out[:, :, :half] + out[:, :, half:]) / 2)  # padded words stay zero
        pooled = words.sum(dim=1) / lengths.to(words.device, words.dtype)[:, None]
        return l2norm(pooled)


class Heads(nn.Module):
    def __init__(self, embed_dim, mii_dim, mei_dim):
        super().__init__()
        self.mii = nn.Linear(embed_dim, mii_dim)
        self.mei = nn.Linear(embed_dim, mei_dim)
        self.critic = nn.Linear(mei_dim, embed_dim, bias=False)

    def forward(self, h):
        return {"h": h, "s": l2norm(self.mii(h)), "x": l2norm(self.mei(h))}


class DisNCLNet(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        self.image = EncoderImagePrecomp(s["feature_dim"], s["embed_dim"])
        self.text = EncoderText(s["vocab_size"], s["word_dim"], s["embed_dim"])
        self.image_heads = Heads(s["embed_dim"], s["mii_dim"], s["mei_dim"])
        self.text_heads = Heads(s["embed_dim"], s["mii_dim"], s["mei_dim"])

    def forward(self, images, tokens, lengths):
        return {
            "image": self.image_heads(self.image(images)),
            "text": self.text_heads(self.text(tokens, lengths)),
        }


class CLUBSample(nn.Module):
    """q(x|s) = N(mu(s), exp(logvar(s))) with `logvar = bound * tanh(raw / bound)`."""

    def __init__(self, mii_dim, mei_dim, hidden=64, logvar_bound=2.0):
        super().__init__()
        self.p_mu = nn.Sequential(nn.Linear(mii_dim, hidden), nn.ReLU(), nn.Linear(hidden, mei_dim))
        self.p_logvar = nn.Sequential(
            nn.Linear(mii_dim, hidden), nn.ReLU(), nn.Linear(hidden, mei_dim)
        )
        self.bound = logvar_bound

    def get_mu_logvar(self, s):
        return self.p_mu(s), self.bound * torch.tanh(self.p_logvar(s) / self.bound)

    def forward(self, s, x, perm):
        mu, logvar = self.get_mu_logvar(s)
        d = (x - mu) ** 2 - (x[perm] - mu) ** 2
        return (-0.5 * (torch.exp(-logvar) * d).sum(dim=-1)).mean()

    def learning_loss(self, s, x):
        mu, logvar = self.get_mu_logvar(s)
        return (0.5 * ((x - mu) ** 2 * torch.exp(-logvar) + logvar + LOG_2PI).sum(dim=-1)).mean()


def encoder_loss(codes, est, critics, w, c: dict, perms):
    """The encoder objective of one network: (total, {term: value})."""
    sv, st = codes["image"]["s"], codes["text"]["s"]
    n = sv.shape[0]
    logits = sv @ st.t() / c["temperature"]
    with torch.no_grad():
        eye = torch.eye(n, dtype=torch.bool, device=sv.device)
        aff = (sv @ sv.t() + st @ st.t()) / (2 * c["target_temperature"])
        neigh = torch.softmax(aff.masked_fill(eye, float("-inf")), dim=1)
        y = w[:, None] * eye + c["neighbour_weight"] * neigh
        y = y / y.sum(dim=1, keepdim=True)
    log_row, log_col = F.log_softmax(logits, dim=1), F.log_softmax(logits, dim=0)
    match = (0.5 * (-(y * log_row).sum(1) - (y * log_col.t()).sum(1))).mean()
    wsum = torch.clamp(w.sum(), min=1.0)
    nce = -0.5 * (torch.diagonal(log_row) + torch.diagonal(log_col))
    s_nce = (w * nce).sum() / wsum
    s_cond = (w * ((sv - st) ** 2).sum(-1)).sum() / wsum
    l_s = s_nce + c["cond_weight"] * s_cond
    l_x = 0.0
    l_reg = 0.0
    for i, m in enumerate(MODALITIES):
        crit = critics[m](codes[m]["x"]) @ codes[m]["h"].detach().t()
        l_x = l_x - (torch.diagonal(crit) - torch.logsumexp(crit, dim=1) + math.log(n)).mean()
        l_reg = l_reg + est[m](codes[m]["s"], codes[m]["x"], perms[i])
    l_dis = c["gamma"] * l_s + (1.0 - c["gamma"]) * l_x
    total = match + c["lambda_dis"] * l_dis + c["lambda_reg"] * l_reg
    terms = {"match": match, "L_S": l_s, "L_S_infonce": s_nce, "L_S_cond": s_cond}
    terms |= {"L_X": l_x, "L_Dis": l_dis, "L_reg": l_reg, "loss": total}
    return total, terms


class TorchDisNCLStep:
    """Both networks' encoder updates, then the estimator updates, on a fixed batch.

    Args:
      shapes: model widths and loss settings (`bench/disncl_step.py` `torch_shapes`).
      batch: numpy arrays `images`, `tokens`, `lengths`, `clean_prob_net_a`/`_net_b`.
      params: the JAX library's initial parameters (flattened `a/b/c` keys), or None.
      threads: `torch.set_num_threads`; device: "cpu" or "cuda".
      compile_mode: None (eager) or a `torch.compile` mode for the forward pass and losses.
      perm_fn: (step, net index, modality index) -> permutation of CLUB-sample's negatives
        (default `torch.randperm`; the loss check passes the JAX step's).
    """

    def __init__(self, shapes, batch, params=None, *, threads=None, device="cpu",
                 compile_mode=None, perm_fn=None):  # fmt: skip
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.c, self.device = shapes, torch.device(device)
        self.names = ("net_a", "net_b") if shapes["co_teaching"] else ("net_a",)
        self.nets = {n: DisNCLNet(shapes).to(self.device) for n in self.names}
        bound = shapes["club_logvar_bound"]
        self.est = {
            n: nn.ModuleDict(
                {m: CLUBSample(shapes["mii_dim"], shapes["mei_dim"], 64, bound) for m in MODALITIES}
            ).to(self.device)
            for n in self.names
        }
        if params is not None:
            load_jax_params(self, params)
        self.opt = {
            n: torch.optim.Adam(
                [p for p in self.nets[n].parameters() if p.requires_grad],
                lr=shapes["learning_rate"],
                betas=(shapes["b1"], shapes["b2"]),
                eps=1e-8,
            )
            for n in self.names
        }
        est_params = [p for n in self.names for p in self.est[n].parameters()]
        self.est_opt = torch.optim.Adam(est_params, lr=shapes["est_learning_rate"], eps=1e-8)
        self.set_batch(batch)
        self.perm_fn = perm_fn
        self.step_count = 0
        self.forward = self._forward
        self.info = {"threads": torch.get_num_threads(), "torch": torch.__version__}
        self.info["device"] = str(self.device)
        if compile_mode:
            self.info["compile_mode"] = compile_mode
            self.forward = torch.compile(self._forward, mode=compile_mode)

    def set_batch(self, batch):
        dev = self.device
        self.images = torch.as_tensor(np.asarray(batch["images"]), dtype=torch.float32).to(dev)
        self.tokens = torch.as_tensor(np.asarray(batch["tokens"]), dtype=torch.long).to(dev)
        self.lengths = torch.as_tensor(np.asarray(batch["lengths"]), dtype=torch.long)  # host
        self.clean = {
            n: torch.as_tensor(np.asarray(batch[f"clean_prob_{n}"]), dtype=torch.float32).to(dev)
            for n in self.names
        }
        self.n = self.images.shape[0]

    def _forward(self, images, tokens, lengths, ws, perms):
        """Every network's codes and encoder loss (`ws[k]`: its clean probabilities)."""
        codes, out = {}, {}
        for k, net in enumerate(self.names):
            codes[net] = self.nets[net](images, tokens, lengths)
            critics = {m: getattr(self.nets[net], f"{m}_heads").critic for m in MODALITIES}
            out[net] = encoder_loss(codes[net], self.est[net], critics, ws[k], self.c, perms[k])
        return codes, out

    def clean_weights(self):
        """w of each network: its partner's clean probabilities (ones during the warm-up)."""
        warm = self.step_count // self.c["steps_per_epoch"] < self.c["warmup_epochs"]
        ws = []
        for k, net in enumerate(self.names):
            partner = self.names[1 - k] if len(self.names) == 2 else net
            ws.append(torch.ones_like(self.clean[partner]) if warm else self.clean[partner])
        return ws

    def step(self):
        pf = self.perm_fn or (lambda step, k, i: torch.randperm(self.n, device=self.device))
        perms = [[pf(self.step_count, k, i) for i in range(2)] for k in range(2)]
        ws = self.clean_weights()
        codes, out = self.forward(self.images, self.tokens, self.lengths, ws, perms)
        terms = {}
        for net in self.names:
            loss, t = out[net]
            self.opt[net].zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.nets[net].parameters(), self.c["grad_clip_norm"])
            self.opt[net].step()
            terms |= {f"{net}/{k}": v.detach() for k, v in t.items()}
        for _ in range(self.c["est_repeats"]):
            self.est_opt.zero_grad(set_to_none=True)
            est_loss = 0.0
            for net in self.names:
                for m in MODALITIES:
                    s, x = codes[net][m]["s"].detach(), codes[net][m]["x"].detach()
                    val = self.est[net][m].learning_loss(s, x)
                    terms[f"est/{net}/{m}_est_loss"] = val.detach()
                    est_loss = est_loss + val
            est_loss.backward()
            self.est_opt.step()
        terms["est/loss"] = est_loss.detach()
        self.step_count += 1
        return terms

    def run(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            terms = self.step()
        self.last_loss = float(terms["net_a/loss"])  # synchronises (and on GPU waits)
        return time.perf_counter() - t0


def load_jax_params(peer: TorchDisNCLStep, params: dict) -> None:
    """Copies the library's parameters (flattened `group/.../leaf` keys, numpy) into the peer."""

    def t(key, transpose=False):
        a = torch.tensor(np.asarray(params[key]), dtype=torch.float32)  # a copy: peers
        return (a.T if transpose else a).contiguous().to(peer.device)  # never share weights

    def linear(layer, prefix):
        layer.weight.data = t(f"{prefix}/kernel", True)
        if layer.bias is not None:
            layer.bias.data = t(f"{prefix}/bias")

    for n in peer.names:
        net, p = peer.nets[n], n
        linear(net.image.fc, f"{p}/image/fc")
        net.text.embed.weight.data = t(f"{p}/text/embed/embedding")
        for suffix, direction in (("", "forward_rnn"), ("_reverse", "backward_rnn")):
            cell = f"{p}/text/{direction}/cell"
            getattr(net.text.rnn, f"weight_ih_l0{suffix}").data = t(f"{cell}/dense_i/kernel", True)
            getattr(net.text.rnn, f"bias_ih_l0{suffix}").data = t(f"{cell}/dense_i/bias")
            getattr(net.text.rnn, f"weight_hh_l0{suffix}").data = t(f"{cell}/dense_h/kernel", True)
        for m in MODALITIES:
            heads = getattr(net, f"{m}_heads")
            for layer in ("mii", "mei", "critic"):
                linear(getattr(heads, layer), f"{p}/{m}_heads/{layer}")
            est = peer.est[n][m]
            for seq, name in ((est.p_mu, "mu"), (est.p_logvar, "logvar")):
                linear(seq[0], f"est_{p}/{m}/{name}/layers/0")
                linear(seq[2], f"est_{p}/{m}/{name}/layers/1")
