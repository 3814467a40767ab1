"""Pure loss functions: Jacobian terms, VAE/flow likelihoods, MI bounds, contrastive losses.

The per-example `jacobian(f, x, mode=...)` function is `jaxmr.losses.jacobian.jacobian`: it is
not re-exported here because `jaxmr.losses.jacobian` names the module.
"""

from jaxmr.losses.contrastive import (
    ncr_soft_margin,
    soft_correspondence_targets,
    soft_target_cross_entropy,
    symmetric_infonce_loss,
    triplet_hinge_loss,
)
from jaxmr.losses.flow import (
    change_of_variables_log_likelihood,
    injective_flow_log_likelihood,
    isotropic_log_prob,
)
from jaxmr.losses.gradient_reversal import gradient_reversal
from jaxmr.losses.jacobian import (
    batched_jacobian,
    frobenius_norm_sq_probe,
    half_logdet_jjt,
    isometry_probe_penalty,
    lipschitz_hinge_penalty,
    log_abs_det,
    log_abs_det_identity_plus,
    logdet_power_series,
    orthogonality_penalty,
    orthogonality_penalty_probe,
    spectral_norm,
    spectral_norm_power,
    subbatch,
)
from jaxmr.losses.mi_bounds import (
    bilinear_scores,
    club_estimator_loss,
    club_sample_upper_bound,
    club_upper_bound,
    concat_scores,
    donsker_varadhan_lower_bound,
    gaussian_log_likelihood,
    infonce_lower_bound,
    jsd_lower_bound,
    jsd_mi_estimate,
    l1out_upper_bound,
    marginal_partner_indices,
    nwj_lower_bound,
    separable_scores,
)
from jaxmr.losses.vae import (
    beta_tc_elbo,
    elbo,
    gaussian_kl,
    gaussian_log_prob,
    minibatch_weighted_log_q,
    reparameterize,
)

__all__ = [
    "batched_jacobian",
    "beta_tc_elbo",
    "bilinear_scores",
    "change_of_variables_log_likelihood",
    "club_estimator_loss",
    "club_sample_upper_bound",
    "club_upper_bound",
    "concat_scores",
    "donsker_varadhan_lower_bound",
    "elbo",
    "frobenius_norm_sq_probe",
    "gaussian_kl",
    "gaussian_log_likelihood",
    "gaussian_log_prob",
    "gradient_reversal",
    "half_logdet_jjt",
    "infonce_lower_bound",
    "injective_flow_log_likelihood",
    "isometry_probe_penalty",
    "isotropic_log_prob",
    "jsd_lower_bound",
    "jsd_mi_estimate",
    "l1out_upper_bound",
    "lipschitz_hinge_penalty",
    "log_abs_det",
    "log_abs_det_identity_plus",
    "logdet_power_series",
    "marginal_partner_indices",
    "minibatch_weighted_log_q",
    "ncr_soft_margin",
    "nwj_lower_bound",
    "orthogonality_penalty",
    "orthogonality_penalty_probe",
    "reparameterize",
    "separable_scores",
    "soft_correspondence_targets",
    "soft_target_cross_entropy",
    "spectral_norm",
    "spectral_norm_power",
    "subbatch",
    "symmetric_infonce_loss",
    "triplet_hinge_loss",
]
