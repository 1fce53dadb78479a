"""SMD's objectives in float64 against closed forms (Eq. 12-15): exact Gaussian teacher and fake."""

import math

import torch
from torch.nn import functional as F

from scoremix.analytic import GaussianMixture, mixture_of
from scoremix.objectives import smd
from scoremix.objectives.smt import generator_direction as smt_generator_direction

F64 = torch.float64


def _pq():
    p = GaussianMixture([[0.0, 0.3]], 0.5)
    q = GaussianMixture([[0.8, -0.4], [-0.5, 0.2]], [0.7, 0.4], [0.6, 0.4])
    return p, q


def test_exact_log_ratio_makes_the_interpolated_denoiser_the_mixture_denoiser():
    """Eq. 12-13 with l = log p_t/q_t give exactly the denoiser of alpha p + (1 - alpha) q (Prop. 3.2)."""
    p, q = _pq()
    g = torch.Generator().manual_seed(0)
    for sigma in (0.05, 0.4, 2.0):
        x = torch.randn(200, 2, generator=g, dtype=F64) * 1.5
        logit = p.log_prob(x, sigma) - q.log_prob(x, sigma)
        for alpha in (0.001, 0.3, 0.5, 0.9, 0.999):
            post = smd.density_ratio_posterior(logit, torch.full((200,), alpha, dtype=F64))
            mix = smd.interpolated_denoiser(post, p.denoiser(x, sigma), q.denoiser(x, sigma))
            exact = mixture_of(p, q, alpha).denoiser(x, sigma)
            torch.testing.assert_close(mix, exact, rtol=1e-10, atol=1e-12)


def test_generator_direction_is_eq15_by_hand_and_the_skew_jsd_direction():
    g = torch.Generator().manual_seed(1)
    n = 6
    x, d_fake, d_teacher = (torch.randn(n, 3, 4, generator=g, dtype=F64) for _ in range(3))
    logit = torch.randn(n, generator=g, dtype=F64)
    alpha = torch.rand(n, generator=g, dtype=F64) * 0.9 + 0.05
    got = smd.generator_direction(x, d_fake, d_teacher, logit, alpha)
    for i in range(n):
        post = 1.0 / (1.0 + math.exp(-(logit[i].item() + math.log(alpha[i].item() / (1 - alpha[i].item())))))
        l1 = (x[i] - d_teacher[i]).abs().mean().item()
        want = post * (d_fake[i] - d_teacher[i]) / (alpha[i].item() * l1)
        torch.testing.assert_close(got[i], want, rtol=1e-12, atol=0)

    # with the exact density ratio, Eq. 15 is the Prop. 3.1 direction (1/alpha)(D_0 - D_alpha) with the DMD weight
    p, q = _pq()
    sigma = 0.7
    xs = q.sample(300, torch.Generator().manual_seed(2))
    x_t = xs + sigma * torch.randn(300, 2, generator=g, dtype=F64)
    alpha = torch.rand(300, generator=g, dtype=F64) * 0.5 + 0.5
    logit = p.log_prob(x_t, sigma) - q.log_prob(x_t, sigma)
    got = smd.generator_direction(xs, q.denoiser(x_t, sigma), p.denoiser(x_t, sigma), logit, alpha)
    d_mix = torch.stack([mixture_of(p, q, a.item()).denoiser(x_t[i : i + 1], sigma)[0] for i, a in enumerate(alpha)])
    want = smt_generator_direction(
        xs, q.denoiser(x_t, sigma), d_mix, p.denoiser(x_t, sigma), alpha=alpha, weighting="dmd"
    )
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    # alpha -> 1 is DMD's (D_fake - D_p) / mean|x - D_p| (up to the clamp of alpha at 1 - 1e-6 in Eq. 13)
    one = smd.generator_direction(xs, q.denoiser(x_t, sigma), p.denoiser(x_t, sigma), logit, torch.ones(300, dtype=F64))
    dmd = (q.denoiser(x_t, sigma) - p.denoiser(x_t, sigma)) / (xs - p.denoiser(x_t, sigma)).abs().mean(1, keepdim=True)
    torch.testing.assert_close(one, dmd, rtol=1e-3, atol=1e-9)


def test_gan_term_is_eq11():
    logit = torch.tensor([0.3, -1.2, 2.0], dtype=F64)
    alpha = torch.tensor([0.5, 0.75, 0.9], dtype=F64)
    want = F.softplus(-logit - torch.log(alpha / (1 - alpha))).mean()
    torch.testing.assert_close(smd.gan_generator_loss(logit, alpha), want)


def test_mixture_loss_by_hand():
    g = torch.Generator().manual_seed(3)
    n = 5
    dp_r, df_r, dp_f, df_f = (torch.randn(n, 2, generator=g, dtype=F64) for _ in range(4))
    l_r, l_f = torch.randn(n, generator=g, dtype=F64), torch.randn(n, generator=g, dtype=F64)
    alpha = torch.rand(n, generator=g, dtype=F64)
    sigma = torch.rand(n, generator=g, dtype=F64) + 0.1
    got = smd.mixture_loss(l_r, dp_r, df_r, l_f, dp_f, df_f, alpha, sigma, 0.5)
    lam = sigma**-2 + 4.0
    post_r = torch.sigmoid(l_r + torch.log(alpha / (1 - alpha)))
    post_f = torch.sigmoid(l_f + torch.log(alpha / (1 - alpha)))
    # pred - target: (1 - D_psi)(D_fake - D_p) on reals, D_psi (D_p - D_fake) on fakes
    real = lam * (((1 - post_r)[:, None] * (df_r - dp_r)) ** 2).mean(1)
    fake = lam * ((post_f[:, None] * (dp_f - df_f)) ** 2).mean(1)
    torch.testing.assert_close(got, alpha * real + (1 - alpha) * fake, rtol=1e-10, atol=1e-12)


def test_density_ratio_head_reaches_log_ratio_with_exact_teacher_and_fake():
    """Train only a head l(x) = w . (1, x, x^2) for 300 Adam steps on the mixture loss (Eq. 14) with the
    exact teacher and fake denoisers of 1-D Gaussians at one noise level: l reaches log p_t/q_t (a
    quadratic). The loss only sees noisy points, so x_real,t and x_fake,t are deterministic quantiles of p_t
    and q_t (2048 each), every one paired with each alpha in {0.1, 0.3, ..., 0.9}: a quadrature of the
    population loss. Measured error 0.013; tolerance 0.03 max abs error on [-1, 2.2]."""
    p = GaussianMixture([[0.0]], 0.5)
    q = GaussianMixture([[0.7]], 0.8)
    sigma, sigma_data, n = 0.5, 0.5, 2048
    u = (torch.arange(n, dtype=F64) + 0.5) / n
    alphas = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=F64)
    x_real_t = (math.sqrt(0.5**2 + sigma**2) * torch.special.ndtri(u)).repeat(5)[:, None]
    x_fake_t = (0.7 + math.sqrt(0.8**2 + sigma**2) * torch.special.ndtri(u)).repeat(5)[:, None]
    alpha = alphas.repeat_interleave(n)
    sig = torch.full_like(alpha, sigma)
    dens = [
        p.denoiser(x_real_t, sigma),
        q.denoiser(x_real_t, sigma),
        p.denoiser(x_fake_t, sigma),
        q.denoiser(x_fake_t, sigma),
    ]
    w = torch.zeros(3, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 300)

    def head(x):
        x = x[:, 0]
        return w[0] + w[1] * x + w[2] * x**2

    for _ in range(300):
        loss = smd.mixture_loss(
            head(x_real_t), dens[0], dens[1], head(x_fake_t), dens[2], dens[3], alpha, sig, sigma_data
        ).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    xs = torch.linspace(-1.0, 2.2, 200, dtype=F64)[:, None]
    exact = p.log_prob(xs, sigma) - q.log_prob(xs, sigma)
    with torch.no_grad():
        err = (head(xs) - exact).abs().max().item()
    assert err < 0.03, err
