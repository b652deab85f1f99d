"""Generate the teaching notebooks in this folder, executed, with their outputs.

    .venv/bin/python notebooks/_build.py          # rebuild and run every notebook
    .venv/bin/python notebooks/_build.py 02       # only those whose name contains "02"
    .venv/bin/python notebooks/_build.py --no-execute   # sources only, no outputs (drafts)

Each notebook is a list of markdown / code cells below; edit them here, not in Jupyter, then
rerun this script. Git holds the notebooks *with* the outputs of a run at their ``QUICK``
settings, so the plots show when browsing; ``tests/test_notebooks.py`` checks that the committed
sources are what this script generates, that every code cell has been run, and executes every
notebook again.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str):
    return new_code_cell(textwrap.dedent(text).strip("\n"))


NOTEBOOKS: dict[str, list] = {}

# --------------------------------------------------------------------------------------------
NOTEBOOKS["01_ddpm_and_vp_sde"] = [
    md(r'''
    # 01 · DDPM and the VP-SDE are one process

    DDPM (Ho et al. 2020) adds noise in $N$ discrete steps,
    $q(x_k \mid x_{k-1}) = \mathcal N(\sqrt{1-\beta_k}\,x_{k-1}, \beta_k I)$, so that

    $$x_k = \sqrt{\bar\alpha_k}\,x_0 + \sqrt{1-\bar\alpha_k}\,\varepsilon, \qquad \bar\alpha_k = \prod_{j\le k}(1-\beta_j).$$

    The variance-preserving SDE (Song et al. 2021) does the same in continuous time,
    $dx = -\tfrac12\beta(t)\,x\,dt + \sqrt{\beta(t)}\,dW$, with marginals
    $x_t = \alpha(t)\,x_0 + \sigma(t)\,\varepsilon$, $\alpha(t) = e^{-\frac12\int_0^t\beta}$, $\sigma^2 = 1-\alpha^2$.

    In jaxir every diffusion is a `LinearSDE` described by its marginal coefficients
    $(\alpha(t), \sigma(t))$. `DiscreteVPSDE(betas)` *is* DDPM's chain written as an SDE:
    $\alpha(t_k)^2 = \bar\alpha_k$ exactly at $t_k = k/N$, with a piecewise-constant $\beta(t)$ in
    between. So the discrete samplers (DDPM, DDIM) and the continuous ones (reverse SDE,
    probability-flow ODE, DPM-Solver) all run on the same object.

    To see that they sample the *same* distribution we need a score we can trust. For a
    Gaussian data distribution $\mathcal N(\mu, \Sigma)$ the noised marginal stays Gaussian,
    $p_t = \mathcal N(\alpha\mu, \alpha^2\Sigma + \sigma^2 I)$, so the optimal noise prediction is closed form:

    $$\hat\varepsilon(x, t) = -\sigma\,\nabla\log p_t(x) = \sigma\,(\alpha^2\Sigma + \sigma^2 I)^{-1}(x - \alpha\mu).$$

    `jaxir.exact.Gaussian(mean, cov).model_fn(sde)` returns exactly this, with the same
    signature `model_fn(x, t, cond)` a trained network has. Any error left is the sampler's own.
    '''),
    code(r'''
    import time

    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np

    from jaxir import exact, metrics, samplers, schedules, sdes

    QUICK = True  # small settings (CI); set False for more samples and smoother plots
    N_SAMPLES = 2_000 if QUICK else 20_000
    print(jax.devices())
    '''),
    md(r'''
    ## The chain and the SDE

    `DiscreteVPSDE` takes DDPM's $\beta_1..\beta_N$; `VPSDE.from_ddpm_linear` is the continuous
    linear $\beta(t) = \beta_{\min} + t(\beta_{\max}-\beta_{\min})$ with $\beta_{\min} = N\beta_1$,
    $\beta_{\max} = N\beta_N$ (the Score-SDE convention). Their $\alpha(t)$ agree to about $10^{-3}$;
    the discrete one hits $\sqrt{\bar\alpha_k}$ on the grid to float precision.
    '''),
    code(r'''
    betas = schedules.linear_beta_schedule(1000)
    ddpm_sde = sdes.DiscreteVPSDE(betas)          # DDPM's chain as an SDE
    vp_sde = sdes.VPSDE.from_ddpm_linear()        # the continuous VP-SDE with the same β

    k = jnp.arange(1, 1001)
    a_grid, _ = ddpm_sde.marginal_coeffs(k / 1000)
    print("max |α(t_k) − sqrt(ᾱ_k)|      :", float(jnp.max(jnp.abs(a_grid - jnp.sqrt(ddpm_sde.alphas_cumprod)))))
    t = jnp.linspace(0.0, 1.0, 401)
    a_d, s_d = ddpm_sde.marginal_coeffs(t)
    a_c, s_c = vp_sde.marginal_coeffs(t)
    print("max |α_discrete − α_continuous|:", float(jnp.max(jnp.abs(a_d - a_c))))

    fig, ax = plt.subplots(1, 2, figsize=(9, 3))
    ax[0].plot(t, a_d, label="α(t) DiscreteVPSDE")
    ax[0].plot(t, a_c, "--", label="α(t) VPSDE")
    ax[0].plot(t, s_d, label="σ(t) DiscreteVPSDE")
    ax[0].plot(t, s_c, "--", label="σ(t) VPSDE")
    ax[0].set_xlabel("t"); ax[0].legend(fontsize=8)
    ax[1].plot(t, ddpm_sde.beta(t), label="β(t) DiscreteVPSDE (−N log(1 − β_k))")
    ax[1].plot(t, vp_sde.beta(t), "--", label="β(t) VPSDE")
    ax[1].set_xlabel("t"); ax[1].legend(fontsize=8)
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    ## An exact prior

    A correlated 2-D Gaussian. Its noised marginal at any $t$ is `prior.marginal(sde, t)`, so we
    can start every sampler from the *exact* $p_T$ (not from $\mathcal N(0, I)$, which is only
    approximately $p_T$): the comparison then isolates the discretisation error.
    '''),
    code(r'''
    prior = exact.Gaussian(jnp.array([1.0, -0.5]), jnp.array([[1.0, 0.8], [0.8, 1.0]]) * 0.5)

    def x_T_for(sde, key):
        return prior.marginal(sde, sde.T).sample(key, N_SAMPLES)

    # the exact model is an ordinary model_fn: (x, t, cond) -> ε̂
    eps_fn = prior.model_fn(ddpm_sde, prediction="eps")
    print(eps_fn(jnp.zeros((3, 2)), 0.5, None))
    '''),
    md(r'''
    ## Five samplers, one distribution

    * **DDPM** ancestral sampling, $x_{k-1} \sim \mathcal N(\tilde\mu_k(x_k, \hat x_0), \tilde\beta_k I)$;
    * **DDIM** (η = 0, deterministic), on 50 respaced steps of the same chain;
    * the **reverse SDE** $dx = [f - g^2\nabla\log p_t]\,dt + g\,d\bar W$ (Euler–Maruyama, diffrax);
    * the **probability-flow ODE** $dx = [f - \tfrac12 g^2\nabla\log p_t]\,dt$ (Heun, diffrax);
    * **DPM-Solver++ (2M)**, a second-order exponential integrator of the same ODE in $\log$-SNR.

    DDPM/DDIM step on the discrete chain; the others integrate the continuous VP-SDE. The
    continuous solvers stop at `t_min` (1e-3), so their target is the exact $p_{t_{\min}}$, which
    we also know in closed form.
    '''),
    code(r'''
    n_steps = 200 if QUICK else 1000
    runs = {
        "DDPM (1000)": (ddpm_sde, lambda k, mf, s, x: samplers.ddpm_sample(k, mf, s, x_init=x, clip_x0=False), 0.0),
        "DDIM η=0 (50)": (ddpm_sde, lambda k, mf, s, x: samplers.ddim_sample(k, mf, s, x_init=x, num_steps=50), 0.0),
        f"reverse SDE EM ({n_steps})": (vp_sde, lambda k, mf, s, x: samplers.sde_sample(k, mf, s, x_init=x, num_steps=n_steps, denoise=False), vp_sde.t_min),
        "PF-ODE Heun (50)": (vp_sde, lambda k, mf, s, x: samplers.ode_sample(k, mf, s, x_init=x, num_steps=50), vp_sde.t_min),
        "DPM-Solver++ 2M (20)": (vp_sde, lambda k, mf, s, x: samplers.dpm_solver_sample(k, mf, s, x_init=x, num_steps=20), 0.0),
    }
    results = {}
    for i, (name, (sde, fn, t_end)) in enumerate(runs.items()):
        key_init, key_run = jax.random.split(jax.random.key(i))
        t0 = time.perf_counter()
        out = jax.jit(lambda k, x: fn(k, prior.model_fn(sde), sde, x))(key_run, x_T_for(sde, key_init))
        out.x.block_until_ready()
        target = prior.marginal(sde, t_end) if t_end > 0 else prior
        z = exact.moment_zscores(out.x, target.mean, target.cov)
        w2 = float(metrics.gaussian_w2(out.x.mean(0), jnp.cov(out.x.T), target.mean, target.cov))
        results[name] = out.x
        print(f"{name:26s} NFE {int(out.nfe):5d}  |Δmean| {z['mean_err']:.3f} (z {z['z_mean']:.1f})"
              f"  |Δcov| {z['cov_err']:.3f} (z {z['z_cov']:.1f})  W2 {w2:.3f}  {time.perf_counter() - t0:.1f}s")
    '''),
    md(r'''
    The $z$-scores measure the errors in standard errors of $n$ samples: below about 4 means
    "indistinguishable from exact at this sample size". (The tests in `tests/test_samplers.py`
    make the same check with 20,000 samples in 3-D.)

    ### Scatter against the exact contours
    '''),
    code(r'''
    def ellipse(mean, cov, r):
        w, v = np.linalg.eigh(np.asarray(cov))
        th = np.linspace(0, 2 * np.pi, 200)
        circ = np.stack([np.cos(th), np.sin(th)])
        return (np.asarray(mean)[:, None] + v @ (np.sqrt(w)[:, None] * circ) * r)

    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.2), sharex=True, sharey=True)
    for ax, (name, x) in zip(axes, results.items()):
        ax.scatter(x[:800, 0], x[:800, 1], s=2, alpha=0.4)
        for r in (1, 2, 3):
            e = ellipse(prior.mean, prior.cov, r)
            ax.plot(e[0], e[1], "k", lw=0.8)
        ax.set_title(name, fontsize=9); ax.set_aspect("equal")
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    ## The probability-flow ODE is a deterministic map; the SDE is not

    Both transport $p_T$ to $p_0$, but the ODE sends each $x_T$ to one fixed $x_0$ (that is what
    makes DDIM inversion, likelihoods and gradients through the sampler possible), whereas the
    reverse SDE re-injects noise. `save_every` returns the trajectory.
    '''),
    code(r'''
    x_T = x_T_for(vp_sde, jax.random.key(42))[:8]
    keys = jax.random.split(jax.random.key(0), 2)  # two runs from the same x_T, different keys
    ode = jax.vmap(lambda k: samplers.ode_sample(k, prior.model_fn(vp_sde), vp_sde, x_init=x_T,
                                                 num_steps=50, save_every=1))(keys)
    rev = jax.vmap(lambda k: samplers.sde_sample(k, prior.model_fn(vp_sde), vp_sde, x_init=x_T,
                                                 num_steps=200, save_every=4, denoise=False))(keys)
    print("PF-ODE, two keys, same x_T: max |Δx_0| =", float(jnp.max(jnp.abs(ode.x[0] - ode.x[1]))))
    print("SDE,    two keys, same x_T: max |Δx_0| =", float(jnp.max(jnp.abs(rev.x[0] - rev.x[1]))))

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True, sharey=True)
    for a, (name, tr) in zip(ax, [("PF-ODE", ode.trajectory[0]), ("reverse SDE", rev.trajectory[0])]):
        tr = np.asarray(tr)
        for j in range(tr.shape[1]):
            a.plot(tr[:, j, 0], tr[:, j, 1], lw=0.8)
            a.plot(tr[0, j, 0], tr[0, j, 1], "k.", ms=4)
            a.plot(tr[-1, j, 0], tr[-1, j, 1], "r.", ms=6)
        e = ellipse(prior.mean, prior.cov, 2)
        a.plot(e[0], e[1], "k--", lw=0.8)
        a.set_title(f"{name}: x_T (black) → x_0 (red)", fontsize=9)
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    ## Same network, any parameterisation

    A model trained to predict $\hat x_0$, $v$ or the score drives the same samplers with
    `prediction=...`; `jaxir.predictions` converts between them. With the exact model the
    answers coincide up to float error:
    '''),
    code(r'''
    x_T = x_T_for(ddpm_sde, jax.random.key(7))[:256]
    outs = {p: samplers.ddim_sample(jax.random.key(0), prior.model_fn(ddpm_sde, prediction=p), ddpm_sde,
                                    x_init=x_T, num_steps=50, prediction=p).x
            for p in ("eps", "x0", "v", "score")}
    for p, x in outs.items():
        print(f"DDIM with prediction={p!r:8s} max |x − x_eps| = {float(jnp.max(jnp.abs(x - outs['eps']))):.2e}")
    '''),
    md(r'''
    **Takeaways.** DDPM's chain is the discretisation of the VP-SDE that `DiscreteVPSDE`
    represents; ancestral sampling, DDIM, the reverse SDE, the PF-ODE and DPM-Solver are different
    integrators of the same reverse process and, with an exact score, all land on the exact
    distribution. What distinguishes them is cost (NFE) and whether the map is deterministic.
    '''),
]

# --------------------------------------------------------------------------------------------
NOTEBOOKS["02_posterior_sampling"] = [
    md(r'''
    # 02 · Posterior sampling against an exact answer

    An inverse problem observes $y = A x + \sigma_y \varepsilon$ and asks for samples of
    $p(x \mid y) \propto p(x)\,p(y \mid x)$ where the prior $p(x)$ is only known through a diffusion
    model. Reverse diffusion needs the score of the *noised posterior*,

    $$\nabla_{x_t}\log p_t(x_t \mid y) = \nabla_{x_t}\log p_t(x_t) + \nabla_{x_t}\log p_t(y \mid x_t),$$

    and the second term, $p_t(y \mid x_t) = \int p(y \mid x_0)\,p(x_0 \mid x_t)\,dx_0$, is intractable.
    Training-free methods approximate it:

    * **DPS** (Chung et al. 2023) replaces $p(x_0 \mid x_t)$ by a point mass at Tweedie's
      $\hat x_0(x_t) = \mathbb E[x_0 \mid x_t]$ and steps down $\zeta\,\nabla_{x_t}\lVert y - A\hat x_0(x_t)\rVert$;
    * **ΠGDM** (Song et al. 2023) uses $p(x_0 \mid x_t) \approx \mathcal N(\hat x_0, r_t^2 I)$, so
      $\nabla\log p_t(y\mid x_t) \approx (\partial\hat x_0/\partial x_t)^\top A^\top (r_t^2AA^\top + \sigma_y^2 I)^{-1}(y - A\hat x_0)$;
    * **DDRM** (Kawar et al. 2022) works in the SVD basis of $A = USV^\top$ and mixes the
      measurement into each spectral coordinate according to its noise level;
    * **MCGdiff** (Cardoso et al. 2024) is a particle filter on the backward chain: no
      approximation of $p_t(y\mid x_t)$, and *exact* as the number of particles grows.

    The test bed is the Gaussian-mixture problem of the MCGdiff paper (`jaxir.bench.gmm`): 25
    unit-variance components on a grid, random weights, a random $A$. Both the noised prior score
    and the posterior are closed form, so every method can be scored against exact samples. We
    use $d = 2$ and one measurement ($d_y = 1$) so the posterior can be *seen*.
    '''),
    code(r'''
    import time

    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np

    from jaxir import exact, inverse, metrics
    from jaxir.bench import gmm
    from jaxir.operators import DenseMatrix

    QUICK = True  # small settings (CI); False: more samples and particles
    N = 1_000 if QUICK else 5_000      # posterior samples per method
    N_REF = 10_000                     # exact reference samples
    STEPS = 100                        # DDIM steps on the authors' grid
    ETA = 0.6                          # DDIM η (the benchmark's setting)
    PARTICLES = 32 if QUICK else 128   # MCGdiff particles per draw
    '''),
    md(r'''
    ## The problem and its exact posterior

    Prior $\sum_k w_k\,\mathcal N(\mu_k, I)$. Each component's posterior is Gaussian with the
    shared covariance $C = (I + A^\top A/\sigma_y^2)^{-1}$ and mean $m_k = C(\mu_k + A^\top y/\sigma_y^2)$,
    and the weights are reweighted by the evidence,
    $w_k' \propto w_k\,\mathcal N(y;\,A\mu_k,\;AA^\top + \sigma_y^2 I)$.

    `gmm.make_problem` draws $(w, A, \sigma_y, x^\*, y)$ and this posterior;
    `jaxir.exact.GaussianMixture.posterior` computes the same thing for any mixture, which we use
    as a cross-check.
    '''),
    code(r'''
    prob = jax.jit(gmm.make_problem, static_argnums=(1, 2))(jax.random.key(4), 2, 1)  # dim 2, dy 1
    print("A =", np.asarray(prob.A), " sigma_y =", float(prob.sigma_y), " y =", np.asarray(prob.y))

    # the same posterior from the generic exact mixture (diagonal covariances = 1)
    @jax.jit
    def generic_posterior(prob):
        prior = exact.GaussianMixture(prob.weights, prob.means, jnp.ones_like(prob.means))
        return prior, prior.posterior(prob.A, prob.sigma_y, prob.y)

    prior_gm, post_gm = generic_posterior(prob)
    print("max |Δ weights| =", float(jnp.max(jnp.abs(post_gm.weights - prob.post_weights))))
    print("max |Δ means|   =", float(jnp.max(jnp.abs(post_gm.means - prob.post_means))))
    top = np.argsort(-np.asarray(prob.post_weights))[:4]
    print("largest posterior weights:", np.round(np.asarray(prob.post_weights)[top], 3))

    exact_sample = jax.jit(gmm.posterior_sample, static_argnums=2)
    ref = exact_sample(jax.random.key(100), prob, N_REF)
    prior_x = gmm.prior_sample(jax.random.key(101), prob, N)
    '''),
    md(r'''
    ## The diffusion and the exact prior model

    `gmm.gmm_sde(STEPS)` is the authors' DDPM chain restricted to their `STEPS`-point grid (a
    `DiscreteVPSDE`); `gmm.gmm_model_fn(prob, sde)` is the exact $\hat\varepsilon$ of the noised
    mixture, equal to `GaussianMixture.model_fn` but cheaper (one matrix product):
    '''),
    code(r'''
    sde = gmm.gmm_sde(STEPS)
    model_fn = gmm.gmm_model_fn(prob, sde)
    x = jax.random.normal(jax.random.key(0), (5, 2)) * 8
    for t in (0.05, 0.5, 0.95):
        d = jnp.max(jnp.abs(model_fn(x, t) - prior_gm.model_fn(sde)(x, t, None)))
        print(f"t = {t}: max |gmm_model_fn − GaussianMixture.model_fn| = {float(d):.1e}")
    op = DenseMatrix(prob.A)   # A with its SVD, as DDRM / ΠGDM / MCGdiff need
    '''),
    md(r'''
    ## Four samplers, one call each

    All take `key, model_fn, sde, op, y, sigma_y, shape` and run as a single `lax.scan`.
    MCGdiff returns one draw per independent particle filter, so `shape = (N, d)` runs `N` filters
    of `PARTICLES` particles each.
    '''),
    code(r'''
    shape = (N, 2)
    common = dict(num_steps=STEPS, spacing="leading")
    methods = {
        "DPS (ζ=1)": lambda k: inverse.dps_sample(k, model_fn, sde, op, prob.y, prob.sigma_y, shape,
                                                  zeta=1.0, eta=ETA, clip_x0=False, **common),
        "ΠGDM": lambda k: inverse.pigdm_sample(k, model_fn, sde, op, prob.y, prob.sigma_y, shape,
                                              eta=ETA, **common),
        "DDRM": lambda k: inverse.ddrm_sample(k, model_fn, sde, op, prob.y, prob.sigma_y, shape,
                                             eta=0.85, eta_b=1.0, **common),
        f"MCGdiff ({PARTICLES})": lambda k: inverse.mcgdiff_sample(k, model_fn, sde, op, prob.y, prob.sigma_y,
                                                                  shape, num_particles=PARTICLES, eta=ETA, **common),
    }
    samples = {}
    for i, (name, fn) in enumerate(methods.items()):
        t0 = time.perf_counter()
        samples[name] = jax.block_until_ready(jax.jit(fn)(jax.random.key(10 + i)).x)
        print(f"{name:16s} {time.perf_counter() - t0:5.1f} s (with compilation)")
    '''),
    md(r'''
    ## Sliced Wasserstein to the exact posterior

    `metrics.sliced_wasserstein` projects both clouds on random directions and computes exact 1-D
    Wasserstein distances; `reduce="max", p=2` is the max-sliced $W_2$ of the benchmark table. Two
    reference rows give the scale: fresh **exact** samples (the noise floor at this sample size)
    and **prior** samples (ignoring $y$ altogether).
    '''),
    code(r'''
    @jax.jit
    def sw(x):  # max-sliced W2 (the benchmark's table)
        return metrics.sliced_wasserstein(jax.random.key(7), x, ref, 100, p=2, reduce="max")

    @jax.jit
    def sw1(x):  # mean-sliced W1 (the MCGdiff authors' evaluation script)
        return metrics.sliced_wasserstein(jax.random.key(7), x, ref, 100, p=1, reduce="mean")

    rows = {"exact (noise floor)": exact_sample(jax.random.key(102), prob, N),
            **samples, "prior (ignores y)": prior_x}
    print(f"{'method':22s} max-sliced W2   mean-sliced W1")
    for name, x in rows.items():
        print(f"{name:22s} {float(sw(x)):10.3f} {float(sw1(x)):14.3f}")
    '''),
    code(r'''
    def plot_cloud(ax, x, title, color):
        ax.scatter(ref[:2000, 0], ref[:2000, 1], s=2, c="0.8", label="exact posterior")
        ax.scatter(x[:, 0], x[:, 1], s=2, c=color, alpha=0.5)
        # the observation: the line A x = y (σ_y blurs it)
        a = np.asarray(prob.A[0]); xs = np.linspace(-22, 22, 2)
        ax.plot(xs, (float(prob.y[0]) - a[0] * xs) / a[1], "k--", lw=0.7)
        ax.plot(prob.means[:, 0], prob.means[:, 1], "k+", ms=5)
        ax.set_xlim(-22, 22); ax.set_ylim(-22, 22); ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)

    fig, axes = plt.subplots(1, len(samples) + 1, figsize=(3.3 * (len(samples) + 1), 3.5))
    plot_cloud(axes[0], prior_x, "prior samples", "tab:gray")
    for ax, (name, x), c in zip(axes[1:], samples.items(), ["tab:red", "tab:orange", "tab:green", "tab:blue"]):
        plot_cloud(ax, np.asarray(x), f"{name}  SW {float(sw(x)):.2f}", c)
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    ## Mode weights

    Where the samplers differ most is *how much mass* each posterior mode gets. The exact
    posterior assigns a sample $x$ to component $k$ with responsibility
    $r_k(x) \propto w_k'\,\mathcal N(x;\,m_k, C)$, and averaging $r_k$ over exact samples gives back
    $w_k'$. So $\hat w_k = \frac1n\sum_i r_k(x_i)$ estimates the mass a sampler puts on mode $k$:
    '''),
    code(r'''
    def mode_freq(x):
        z = ((x[:, None] - prob.post_means[None]) @ prob.vt.T) / prob.post_scale  # whitened by C
        r = jax.nn.softmax(jnp.log(prob.post_weights) - 0.5 * jnp.sum(z**2, -1), -1)
        return np.asarray(r.mean(0))

    fig, ax = plt.subplots(figsize=(8, 3))
    width = 0.8 / (len(samples) + 1)
    ax.bar(np.arange(4) - 0.4 + width / 2, np.asarray(prob.post_weights)[top], width, label="exact", color="k")
    for j, (name, x) in enumerate(samples.items()):
        ax.bar(np.arange(4) - 0.4 + width * (j + 1.5), mode_freq(x)[top], width, label=name)
    ax.set_xticks(range(4), [f"mode {k}" for k in top]); ax.set_ylabel("mass"); ax.legend(fontsize=8)
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    The noise floor row shows how much a max-sliced distance between 1,000 samples and the
    reference moves by chance alone (mostly from the sampled mode frequencies): differences
    below it mean nothing. A cleaner number here is the total-variation error of the **mode
    weights**, $\tfrac12\sum_k |\hat w_k - w_k'|$, whose sampling noise is a few hundredths at this size.

    ## MCGdiff improves with particles

    MCGdiff's only approximation is Monte Carlo: with more particles per filter its draws
    approach the posterior of the diffusion's own backward chain, which with the exact prior score
    is the exact posterior up to discretisation. The approximations inside DPS, ΠGDM and DDRM do
    not go away with more compute. A filter of only 4 particles for comparison:
    '''),
    code(r'''
    samples["MCGdiff (4)"] = inverse.mcgdiff_sample(jax.random.key(20), model_fn, sde, op, prob.y, prob.sigma_y,
                                                    shape, num_particles=4, eta=ETA, **common).x
    tv = {"exact (noise floor)": rows["exact (noise floor)"], **samples}
    for name, x in tv.items():
        err = 0.5 * np.abs(mode_freq(x) - np.asarray(prob.post_weights)).sum()
        print(f"{name:22s} mode-weight TV error {err:.3f}")
    '''),
    md(r'''
    **Takeaways.** Exact references turn "the samples look plausible" into numbers: the
    heuristic guidance terms of DPS and ΠGDM, and DDRM's spectral mixing, put the mass on the
    observation line but misweight its modes; the particle filter recovers the weights and improves
    with particles. `jaxir bench gmm` runs the full benchmark (d = 8 to 800, several $d_y$).

    ## The same on images: posterior mean and uncertainty

    Samplers take images `(B, H, W, C)`. `jaxir.images.ImagePrior` wraps an exact prior over
    $d = H W C$ as a prior over images, so its `model_fn`, samples and closed-form posterior
    (`posterior(op, σ_y, y)`, for any linear operator of `jaxir.operators`) are images too. Here a
    smooth Gaussian field on 16×16 grey images, 2× super-resolution by block averaging, and 32
    DDRM samples. Data often come in [0, 1]: the measurement is written in those units and moved
    to the library's [-1, 1] together with its noise level (`images.measurement_to_signed`:
    $y' = 2y - A\mathbf 1$, $\sigma' = 2\sigma$). `jaxir.plot.compare` puts restorations next to
    the truth with PSNR / SSIM; `jaxir.plot.posterior_maps` shows the mean of the samples and
    their per-pixel standard deviation next to the error of the mean.
    '''),
    code(r'''
    from jaxir import images, operators, plot, schedules, sdes

    H = W = 16
    ij = jnp.stack(jnp.meshgrid(jnp.arange(H), jnp.arange(W), indexing="ij"), -1).reshape(-1, 2)
    cov = 0.3 * jnp.exp(-jnp.sum((ij[:, None] - ij[None]) ** 2, -1) / 12.0) + 1e-3 * jnp.eye(H * W)
    field = images.ImagePrior(exact.Gaussian(jnp.zeros(H * W), cov), (H, W, 1))
    x_true = field.sample(jax.random.key(30), 1)[0]                      # (16, 16, 1) in [-1, 1]

    sr = operators.SuperResolution((H, W, 1), 2)
    x01 = images.to_unit(x_true)                                         # the data in [0, 1] ...
    y01 = sr.A(x01) + 0.025 * jax.random.normal(jax.random.key(31), sr.y_shape)   # ... σ = 0.025
    y, sigma_y = images.measurement_to_signed(y01, 0.025, sr)            # in [-1, 1]: σ_y = 0.05

    img_sde = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
    ddrm = inverse.ddrm_sample(jax.random.key(32), field.model_fn(img_sde), img_sde, sr, y,
                               sigma_y, (32, H, W, 1)).x
    post = field.posterior(sr, sigma_y, y)                               # the exact posterior
    exact_std = jnp.sqrt(jnp.diag(post.prior.cov))
    rmse = float(jnp.sqrt(jnp.mean((ddrm.mean(0) - post.mean) ** 2)))
    print(f"DDRM mean of 32 vs the exact posterior mean: RMSE {rmse:.3f}; mean per-pixel std: "
          f"DDRM {float(ddrm.std(0, ddof=1).mean()):.3f}, exact {float(exact_std.mean()):.3f}")
    plot.compare({"A⁺y": sr.A_pinv(y), "one DDRM sample": ddrm[0], "DDRM mean of 32": ddrm.mean(0),
                  "exact posterior mean": post.mean}, reference=x_true, size=1.8)
    plt.show()
    plot.posterior_maps(ddrm, reference=x_true, measurement=y)
    plt.show()
    '''),
]

# --------------------------------------------------------------------------------------------
NOTEBOOKS["03_irsde_and_bridges"] = [
    md(r'''
    # 03 · From LQ to HQ: the IR-SDE and diffusion bridges

    Image-restoration diffusions do not start from pure noise: they start from the degraded
    (low-quality, LQ) image $y$ and end at a clean (high-quality, HQ) one $x_0$.

    **IR-SDE** (Luo et al. 2023) is a mean-reverting Ornstein–Uhlenbeck process with mean $\mu = y$,

    $$dx = \theta_t(\mu - x)\,dt + \sigma_t\,dW, \qquad \sigma_t^2 = 2\lambda^2\theta_t,$$

    whose marginal is $x_t = \mu + (x_0 - \mu)e^{-\bar\theta_t} + \lambda\sqrt{1 - e^{-2\bar\theta_t}}\,\varepsilon$:
    at $t = T$ it is (almost) $\mathcal N(y, \lambda^2 I)$. In jaxir it is `sdes.MeanRevertingSDE(mu=y, lam, T)`,
    a `LinearSDE` with the offset $m(t) = (1-\alpha(t))\,\mu$, so the generic samplers and exact
    references apply to it.

    **Bridges** pin the end point exactly: Doob's $h$-transform conditions any linear SDE on
    $x_T = y$ by adding $g^2 h$ to the drift, $h(x, t) = \nabla_x \log p(x_T = y \mid x_t = x)$. GOUB is
    the bridge of the IR-SDE, I2SB the bridge of a Brownian motion, DDBM the bridge of a VP (or VE)
    SDE; in jaxir each is `bridges.Bridge(sde, y)` for the matching SDE.

    A toy with exact answers: two "pixels", one LQ observation $y$, and the HQ images consistent
    with it distributed as $\mathcal N(m, \Sigma)$. Every score is then closed form and every
    sampler can be checked.
    '''),
    code(r'''
    import math

    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np

    from jaxir import bridges, exact, samplers, sdes
    from jaxir.bridges import Bridge
    from jaxir.sdes import LinearSDE

    QUICK = True  # small settings (CI); False: more samples and steps
    N = 1_000 if QUICK else 10_000
    STEPS = 200 if QUICK else 1000

    y = jnp.array([1.5, 1.0])                                   # the LQ "image"
    hq = exact.Gaussian(jnp.array([-1.0, -0.5]),                 # HQ images consistent with y
                        jnp.array([[0.3, 0.15], [0.15, 0.2]]))

    def ellipse(g, r=2.0):
        w, v = np.linalg.eigh(np.asarray(g.cov))
        th = np.linspace(0, 2 * np.pi, 100)
        return np.asarray(g.mean)[:, None] + v @ (np.sqrt(w)[:, None] * np.stack([np.cos(th), np.sin(th)])) * r

    def euler_maruyama(drift, diffusion, x, ts, key):
        """Integrate dx = drift dt + diffusion dW over the grid ts (increasing or decreasing:
        a decreasing grid integrates a reverse-time drift backwards). Returns every state."""
        def step(x, inp):
            t, t_next, k = inp
            dt = t_next - t
            x = x + drift(x, t) * dt + diffusion(t) * jnp.sqrt(jnp.abs(dt)) * jax.random.normal(k, x.shape)
            return x, x
        keys = jax.random.split(key, len(ts) - 1)
        _, path = jax.lax.scan(step, x, (ts[:-1], ts[1:], keys))
        return jnp.concatenate([x[None], path])
    '''),
    md(r'''
    ## IR-SDE: forward from HQ to LQ

    `MeanRevertingSDE` uses the official cosine $\theta$ schedule over $T = 100$ steps (time runs in
    step units) and $\lambda$ (the end noise; 10/255 for images, larger here to be visible).
    '''),
    code(r'''
    ir = sdes.MeanRevertingSDE(y, lam=0.5, T=100)
    t = jnp.linspace(0.0, ir.T, 201)
    a, s = ir.marginal_coeffs(t)
    print("α(T) =", float(a[-1]), " σ(T) =", float(s[-1]), "(= λ √(1 − α(T)²))")

    x0 = hq.sample(jax.random.key(0), 12)
    fwd = jax.jit(lambda x, k: euler_maruyama(ir.drift, ir.diffusion, x, t, k))(x0, jax.random.key(1))

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    ax[0].plot(t, a, label="α(t) = e^{−θ̄_t}"); ax[0].plot(t, s, label="σ(t)"); ax[0].plot(t, ir.theta(t) * 10, label="10·θ(t)")
    ax[0].set_xlabel("t (IR-SDE steps)"); ax[0].legend(fontsize=8)
    for j in range(fwd.shape[1]):
        ax[1].plot(fwd[:, j, 0], fwd[:, j, 1], lw=0.6)
    e = ellipse(hq); ax[1].plot(e[0], e[1], "k", lw=1, label="HQ (2σ)")
    ax[1].plot(*y, "r*", ms=12, label="LQ y"); ax[1].legend(fontsize=8); ax[1].set_aspect("equal")
    ax[1].set_title("forward IR-SDE paths: HQ → N(y, λ²)", fontsize=9)
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    ## IR-SDE: reverse from LQ to HQ

    The reverse SDE $dx = [\theta_t(\mu - x) - \sigma_t^2\nabla\log p_t(x)]\,dt + \sigma_t\,d\bar W$ starts
    from $x_T = y + \lambda\varepsilon$. For a Gaussian HQ distribution $p_t$ is Gaussian,
    $\mathcal N(\alpha m + (1-\alpha)y,\; \alpha^2\Sigma + \sigma^2 I)$, and `hq.model_fn(ir)` gives its exact
    $\hat\varepsilon$, so the generic `samplers.sde_sample` runs the IR-SDE unchanged.
    '''),
    code(r'''
    out = samplers.sde_sample(jax.random.key(2), hq.model_fn(ir), ir, (N, 2), num_steps=STEPS,
                              denoise=False, save_every=STEPS // 50)
    z = exact.moment_zscores(out.x, hq.mean, hq.cov)
    print(f"IR-SDE reverse, {STEPS} Euler steps: |Δmean| {z['mean_err']:.3f} (z {z['z_mean']:.1f}), "
          f"|Δcov| {z['cov_err']:.3f} (z {z['z_cov']:.1f})")

    fig, ax = plt.subplots(figsize=(4.5, 4))
    tr = np.asarray(out.trajectory)
    for j in range(10):
        ax.plot(tr[:, j, 0], tr[:, j, 1], lw=0.6)
    ax.scatter(out.x[:, 0], out.x[:, 1], s=2, alpha=0.3, c="tab:blue")
    e = ellipse(hq); ax.plot(e[0], e[1], "k", lw=1)
    ax.plot(*y, "r*", ms=12); ax.set_aspect("equal"); ax.set_title("reverse IR-SDE: LQ → HQ", fontsize=9)
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    ## Bridges: Doob's $h$-transform for any linear SDE

    For a linear SDE the transition $x_T \mid x_t$ is Gaussian with scale $a = \alpha(T)/\alpha(t)$, mean
    $a(x_t - m_t) + m_T$ and variance $v = \sigma_T^2 - a^2\sigma_t^2$, so

    $$h(x_t, t) = \frac{a}{v}\bigl(y - a(x_t - m_t) - m_T\bigr), \qquad
    dx = [f(x,t) + g(t)^2 h(x_t, t)]\,dt + g(t)\,dW$$

    is a process that starts at $x_0$ and hits $y$ at $T$. Its marginal $x_t \mid x_0, x_T = y$ is
    Gaussian (`Bridge.marginal`). Three published bridges, one class:
    '''),
    code(r'''
    BRIDGES = {
        "GOUB (IR-SDE bridge)": bridges.goub(y, lam=0.5, T=100),
        "I2SB (Brownian bridge)": bridges.i2sb(y, beta_max=1.0),
        "DDBM-VP": bridges.ddbm_vp(y),
    }
    x_start = jnp.array([-1.0, -0.5])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (name, b) in zip(axes, BRIDGES.items()):
        ts = jnp.linspace(0.0, b.T, 401)
        paths = jax.jit(lambda k: euler_maruyama(b.drift, b.diffusion, jnp.broadcast_to(x_start, (200, 2)), ts, k))(
            jax.random.key(3))
        mean, std = b.marginal(x_start, ts[:, None])
        std = std.reshape(-1)
        for j in range(6):
            ax.plot(ts, paths[:, j, 0], lw=0.5)
        ax.plot(ts, mean[:, 0], "k", lw=1.5, label="closed-form mean")
        ax.fill_between(ts, mean[:, 0] - 2 * std, mean[:, 0] + 2 * std, color="k", alpha=0.1, label="± 2 std")
        ax.plot(ts, paths[:, :, 0].mean(1), "r--", lw=1, label="mean of 200 paths")
        ax.set_title(f"{name}\nend: |x_T − y| = {float(jnp.abs(paths[-1] - y).mean()):.3f}", fontsize=9)
        ax.set_xlabel("t"); ax.set_ylabel("first pixel")
    axes[0].legend(fontsize=7)
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    ## Reverse bridges with the exact score

    Restoration runs a bridge backwards from $y$. With the conditional score
    $s(x, t) = \nabla\log q(x_t \mid x_T = y)$ the reverse bridge is (DDBM Eq. 10)

    $$dx = \bigl[f + g^2 h - g^2 s\bigr]\,dt + g\,d\bar W \quad\text{(backwards in } t\text{)},$$

    which `bridges.reverse_bridge(b, score_fn)` returns as a drift/diffusion pair. Here $x_0 \sim \mathcal N(m, \Sigma)$
    independent of the pinned $y$ and the bridge marginal is linear in $x_0$ — mean $C_t x_0 + k_t$,
    std $s_t$ — so $q(x_t \mid y) = \mathcal N(C_t m + k_t,\; C_t \Sigma C_t^\top + s_t^2 I)$. $C_t$ is
    read off `Bridge.marginal` with `jax.jacfwd`, for any bridge.

    $h$ diverges at $T$ (the process is pinned there), so we start at $t = 0.98\,T$ from the exact
    $q(x_t \mid y)$, as a trained sampler's first step would.
    '''),
    code(r'''
    def conditional_stats(b, prior, t):
        mean, std = b.marginal(prior.mean, t)
        C = jax.jacfwd(lambda x0: b.marginal(x0, t)[0])(prior.mean)
        return mean, C @ prior.cov @ C.T + std**2 * jnp.eye(prior.dim)

    def exact_bridge_score(b, prior):
        def score(x, t, cond=None):
            mean, cov = conditional_stats(b, prior, t)
            return -jnp.linalg.solve(cov, (x - mean).T).T
        return score

    def restore(b, prior, key, n=N, steps=STEPS, frac=0.98):
        rev = bridges.reverse_bridge(b, exact_bridge_score(b, prior))
        t_start = frac * b.T
        k1, k2 = jax.random.split(key)
        x = exact.Gaussian(*conditional_stats(b, prior, t_start)).sample(k1, n)
        ts = jnp.linspace(t_start, 0.0, steps + 1)
        return euler_maruyama(rev.drift, rev.diffusion, x, ts, k2)

    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
    for ax, (name, b) in zip(axes, BRIDGES.items()):
        path = jax.jit(lambda k: restore(b, hq, k))(jax.random.key(4))
        z = exact.moment_zscores(path[-1], hq.mean, hq.cov)
        print(f"{name:24s} |Δmean| {z['mean_err']:.3f} (z {z['z_mean']:.1f})  |Δcov| {z['cov_err']:.3f} (z {z['z_cov']:.1f})")
        for j in range(10):
            ax.plot(path[::4, j, 0], path[::4, j, 1], lw=0.5)
        ax.scatter(path[-1, :, 0], path[-1, :, 1], s=2, alpha=0.3)
        e = ellipse(hq); ax.plot(e[0], e[1], "k", lw=1)
        ax.plot(*y, "r*", ms=12); ax.set_title(f"reverse {name}", fontsize=9); ax.set_aspect("equal")
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    The $z$-scores are in standard errors of $N$ samples; values below about 4 mean the bridge
    lands on the exact HQ distribution. For trained networks, `jaxir.samplers` has the papers'
    own bridge samplers built on the same `Bridge` objects.

    ## A new SDE, and its bridge for free

    A `LinearSDE` subclass needs one method, `marginal_coeffs(t) -> (α(t), σ(t))`. The drift and
    diffusion follow by automatic differentiation,

    $$f(t) = \frac{d\log\alpha}{dt}, \qquad g(t)^2 = \frac{d\sigma^2}{dt} - 2f(t)\,\sigma(t)^2,$$

    and with them the samplers, the exact references and the bridge. Below, an Ornstein–Uhlenbeck
    process with rate $r$ and stationary std $\rho$ (so $f = -r$, $g = \rho\sqrt{2r}$ in closed form, to check):
    '''),
    code(r'''
    class OU(LinearSDE):
        rate: float = 3.0
        rho: float = 0.7

        def marginal_coeffs(self, t):
            a = jnp.exp(-self.rate * t)
            return a, self.rho * jnp.sqrt(-jnp.expm1(-2 * self.rate * t))

    ou = OU()   # T = 1, t_min = 1e-3 by default
    t = jnp.asarray(0.4)
    print("f(t): autodiff", float(ou.drift_coeff(t)), " closed form", -ou.rate)
    print("g(t): autodiff", float(ou.diffusion(t)), " closed form", ou.rho * math.sqrt(2 * ou.rate))

    b = Bridge(ou, y)                                   # the OU bridge to y: nothing else to write
    x = jnp.array([0.2, -0.3])
    print("h closed form", b.h(x, t), " via jax.grad of log p(x_T = y | x_t)",
          bridges.h_transform_autodiff(ou, x, t, y))

    # it is an ordinary diffusion too: the generic sampler with the exact HQ score
    plain = samplers.sde_sample(jax.random.key(5), hq.model_fn(ou), ou, (N, 2), num_steps=STEPS, denoise=False)
    path = jax.jit(lambda k: restore(b, hq, k))(jax.random.key(6))
    for name, xs in [("OU diffusion (sde_sample)", plain.x), ("OU bridge to y (reverse)", path[-1])]:
        z = exact.moment_zscores(xs, hq.mean, hq.cov)
        print(f"{name:28s} |Δmean| {z['mean_err']:.3f} (z {z['z_mean']:.1f})  |Δcov| {z['cov_err']:.3f} (z {z['z_cov']:.1f})")
    '''),
    md(r'''
    **Takeaways.** The IR-SDE is just another linear SDE (with an offset), so the generic
    samplers run it; bridges are the same SDEs conditioned on their end point through a
    closed-form $h$, so GOUB, I2SB and DDBM differ only in the SDE they condition, and a new SDE
    written as one `marginal_coeffs` method gets its drift, diffusion, $h$, bridge marginals and
    reverse bridge for free.
    '''),
]

# --------------------------------------------------------------------------------------------
NOTEBOOKS["04_training_and_gradients"] = [
    md(r'''
    # 04 · Training, sharding, and gradients through a sampler

    Three things in one notebook:

    1. **train** a (very) small U-Net on the offline `digits` data with `jaxir.training.train`,
       the same loop the `jaxir train` command runs (checkpoints, resume, EMA, metrics);
    2. **shard** it: the train step is one `jax.jit` over a `(data, fsdp)` device mesh;
    3. **differentiate through a sampler**: every sampler is a pure JAX function, so `jax.grad`
       goes through `ddim_sample` to its initial noise or to parameters of the model.

    The denoising loss (DDPM's $L_\text{simple}$) on the continuous VP-SDE is

    $$\mathcal L(\theta) = \mathbb E_{x_0,\,t,\,\varepsilon}\,\bigl\lVert \varepsilon_\theta(\alpha_t x_0 + \sigma_t\varepsilon,\ t) - \varepsilon \bigr\rVert^2 .$$
    '''),
    code(r'''
    import json
    import os
    import subprocess
    import sys
    import tempfile
    import textwrap
    import warnings
    from pathlib import Path

    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np
    import optax

    from jaxir import exact, samplers, sdes, training
    from jaxir.models import UNetConfig
    from jaxir.training import DataConfig, LossConfig, OptimConfig, SDEConfig, TrainConfig

    QUICK = True  # a few dozen steps (CI); False: a few hundred (still minutes on a laptop CPU)
    STEPS = 40 if QUICK else 600
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets
    print(jax.devices())
    '''),
    md(r'''
    ## 1 · Train

    A run is a `TrainConfig` (usually a Python file in `experiments/configs/`, loaded with
    `training.load_config("digits_small")`); here it is written inline: a U-Net with one
    resolution level and 8 channels on 8×8 digits. `train(config, workdir)` writes checkpoints
    (orbax), `config.json`, `metrics.jsonl` and `loss.png` to the workdir; rerunning it on the same
    workdir resumes exactly where the last checkpoint left off.
    '''),
    code(r'''
    config = TrainConfig(
        name="notebook",
        model=UNetConfig(in_channels=1, out_channels=1, base_channels=8, channel_mults=(1,),
                         num_res_blocks=1, attention_resolutions=(), image_size=8, num_groups=4),
        sde=SDEConfig(name="vp"),
        loss=LossConfig(kind="denoising", prediction="eps", weighting="simple"),
        optim=OptimConfig(lr=2e-3, warmup_steps=5, ema_decay=0.9, grad_clip=1.0),
        data=DataConfig(source="digits", image_size=8, batch_size=32, prefetch=0),
        steps=STEPS, log_every=5, save_every=0, keep=1, sample_every=0, async_save=False,
    )
    workdir = Path(tempfile.mkdtemp(prefix="jaxir_nb04_"))
    state = training.train(config, workdir, progress=False)
    print("step", int(state.step), "| files:", sorted(p.name for p in workdir.iterdir()))

    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    plt.figure(figsize=(4, 2.5))
    plt.plot([r["step"] for r in rows], [r["loss"] for r in rows], ".-")
    plt.xlabel("step"); plt.ylabel("denoising loss"); plt.yscale("log"); plt.tight_layout(); plt.show()
    '''),
    md(r'''
    `training.load_model_fn(workdir)` turns the latest checkpoint (EMA weights by default) into a
    `model_fn` and returns the SDE it was trained with — everything a sampler needs. After a few
    dozen steps the samples are only blobs; `jaxir train --config digits_small` (a few minutes on
    2 CPU cores) gives recognisable digits.
    '''),
    code(r'''
    from jaxir import plot

    model_fn, sde, _ = training.load_model_fn(workdir)
    out = samplers.ddim_sample(jax.random.key(0), model_fn, sde, (16, 8, 8, 1), num_steps=20)
    plot.sample_grid(out.x, ncol=8, size=0.8,
                     title=f"DDIM, 20 steps, after {int(state.step)} training steps")
    plt.show()
    '''),
    md(r'''
    ## 2 · Sharding

    `train` builds a mesh with two named axes: **`data`** splits every batch across devices (data
    parallelism) and **`fsdp`** additionally splits large parameters, their optimizer moments and
    EMA copies across devices (fully sharded data parallelism). The batch is split over both axes
    together; a parameter with at least `fsdp_min_size` elements is split along its largest dimension
    divisible by the `fsdp` size (`training.param_spec`); smaller ones are replicated. The train step
    is then a single `jax.jit` with those `in_shardings`/`out_shardings`, and XLA inserts the
    collectives (gradient all-reduce, parameter all-gather).

    This machine shows one CPU device, so the mesh is `data=1, fsdp=1`:
    '''),
    code(r'''
    mesh = training.make_mesh()  # all devices on "data", fsdp = 1
    print(mesh)
    print("batch sharding:", training.batch_sharding(mesh).spec)
    graphdef, st, shardings, tx, _ = training.init_train_state(config, mesh)
    big = max(jax.tree.leaves(st.params), key=lambda p: p.size)
    print("largest parameter", big.shape, "->", big.sharding)
    '''),
    md(r'''
    **Several devices on one CPU.** XLA can split the host into fake devices:
    `XLA_FLAGS=--xla_force_host_platform_device_count=8` must be set *before* JAX starts (so not in
    this running kernel; here in a subprocess). That is how the sharded code paths are tested without
    accelerators, and what the command line does with

    ```bash
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      jaxir train --config digits_tiny --workdir runs/mesh --mesh data=4,fsdp=2 --steps 20
    ```
    '''),
    code(r'''
    script = textwrap.dedent("""
        import jax, jax.numpy as jnp
        from jax.sharding import NamedSharding
        from jaxir.training import batch_sharding, make_mesh, param_spec

        mesh = make_mesh(data=4, fsdp=2)
        print(len(jax.devices()), "devices;", mesh)
        x = jax.device_put(jnp.zeros((32, 8, 8, 1)), batch_sharding(mesh))
        print("batch (32, 8, 8, 1): each device holds", x.addressable_shards[0].data.shape)
        spec = param_spec((3, 3, 64, 128), mesh.shape["fsdp"])
        w = jax.device_put(jnp.zeros((3, 3, 64, 128)), NamedSharding(mesh, spec))
        print("conv kernel (3, 3, 64, 128):", spec, "-> each device holds", w.addressable_shards[0].data.shape)
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    print(res.stdout or res.stderr[-2000:])
    '''),
    md(r'''
    **Pods and multi-GPU hosts.** Run the *same* command on every host and add
    `--coordinator auto` (Cloud TPU pods, SLURM and GKE are detected by `jax.distributed`), or
    `--coordinator HOST:PORT --num-processes N --process-id I` (or the environment variables
    `JAXIR_COORDINATOR`, `JAXIR_NUM_PROCESSES`, `JAXIR_PROCESS_ID`; see
    `training.initialize_distributed`). The mesh then spans every host's devices, each host loads
    only its own slice of each global batch (`training.global_batch`), and orbax writes one
    checkpoint cooperatively. `--mesh data=D,fsdp=F` with `D·F` = the total device count chooses
    the split.

    ## 3 · Gradients through a sampler

    `ddim_sample` is a `lax.scan` of pure steps, so `jax.grad` differentiates through all of them
    (`checkpoint=True` rematerialises each step in the backward pass, trading compute for memory).
    With the exact model of a Gaussian $\mathcal N(\mu, \Sigma)$ the deterministic DDIM map
    $x_T \mapsto x_0$ is a smooth function of both $x_T$ and $\mu$.

    **(a) A parameter of the model.** Learn $\mu$ *through the sampler*: minimise
    $\lVert \overline{\text{DDIM}_\mu(x_T)} - \mu^\star\rVert^2$, the distance between the mean of the
    generated samples and a target, by gradient descent on $\mu$. First a check of the gradient
    against central finite differences:
    '''),
    code(r'''
    ddpm_sde = sdes.VPSDE()
    cov = jnp.array([[1.0, 0.6], [0.6, 0.8]])
    x_T = jax.random.normal(jax.random.key(1), (256, 2))   # fixed initial noise
    target = jnp.array([2.0, -1.0])

    def generate(mu, x_T):
        prior = exact.Gaussian(mu, cov)
        return samplers.ddim_sample(jax.random.key(0), prior.model_fn(ddpm_sde), ddpm_sde, x_init=x_T,
                                    num_steps=20, checkpoint=True).x

    def loss_mu(mu):
        return jnp.sum((generate(mu, x_T).mean(0) - target) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss_mu))
    mu = jnp.zeros(2)
    _, g = value_and_grad(mu)
    loss_jit = jax.jit(loss_mu)
    h = 1e-2
    fd = jnp.array([(loss_jit(mu + h * e) - loss_jit(mu - h * e)) / (2 * h) for e in jnp.eye(2)])
    print("jax.grad:", np.asarray(g), " finite differences:", np.asarray(fd))

    opt = optax.adam(0.1)
    opt_state, history = opt.init(mu), []
    for _ in range(60):
        val, g = value_and_grad(mu)
        updates, opt_state = opt.update(g, opt_state)
        mu = optax.apply_updates(mu, updates)
        history.append(float(val))
    print("learned μ =", np.asarray(mu), " target", np.asarray(target))
    '''),
    md(r'''
    **(b) The initial noise.** Find the $x_T$ whose DDIM sample lands on a chosen point $x^\star$
    (inversion by optimisation), with a small penalty keeping $x_T$ Gaussian-typical:
    $\min_{x_T} \lVert\text{DDIM}(x_T) - x^\star\rVert^2 + 10^{-3}\lVert x_T\rVert^2$.
    '''),
    code(r'''
    mu0 = jnp.array([0.5, 0.0])
    x_star = jnp.array([[1.5, 1.2], [-1.0, -0.6], [0.5, -1.5]])  # three points to hit

    def loss_xT(z):
        return jnp.sum((generate(mu0, z) - x_star) ** 2) + 1e-3 * jnp.sum(z**2)

    vg = jax.jit(jax.value_and_grad(loss_xT))
    z = jax.random.normal(jax.random.key(2), x_star.shape)
    start = generate(mu0, z)
    opt_state, history_z = opt.init(z), []
    for _ in range(60):
        val, g = vg(z)
        updates, opt_state = opt.update(g, opt_state)
        z = optax.apply_updates(z, updates)
        history_z.append(float(val))
    end = generate(mu0, z)
    print("DDIM(x_T) after optimisation:\n", np.asarray(end).round(3))

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].semilogy(history, label="(a) learn μ"); ax[0].semilogy(history_z, label="(b) optimise x_T")
    ax[0].set_xlabel("Adam step"); ax[0].set_ylabel("loss"); ax[0].legend()
    ax[1].scatter(*np.asarray(generate(mu0, x_T)).T, s=2, c="0.75", label="DDIM samples")
    ax[1].plot(*np.asarray(start).T, "bo", label="DDIM(x_T) before")
    ax[1].plot(*np.asarray(end).T, "go", label="after")
    ax[1].plot(*np.asarray(x_star).T, "rx", ms=10, label="targets x*")
    ax[1].legend(fontsize=7); ax[1].set_aspect("equal")
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    The same works with a trained network (`model_fn` from `load_model_fn`) and with
    `dpm_solver_sample`, `ode_sample` (also with `adjoint=diffrax.BacksolveAdjoint()`) and
    `sde_sample` (its default `brownian="step"` path, or `"virtual"`); the tests compare these
    gradients with finite differences. `sde_sample(..., brownian="unsafe")` supports
    forward-mode differentiation only.
    '''),
    md(r'''
    ## 4 · Long chains in √N memory, and learned few-step grids

    **Memory.** Reverse mode through a `lax.scan` stores every step's intermediates
    (`checkpoint=False`, memory ∝ N). `checkpoint=True` rematerialises each step but still keeps
    one state per step (∝ N states). `checkpoint="sqrt"` is two-level checkpointing: an outer
    scan over ⌊N/B⌋ blocks of B = ⌈√N⌉ steps, each block and each step inside it rematerialised
    (the N mod B last steps in a per-step scan): about 2√N states, for one more forward
    evaluation of every step. Every scan sampler takes it (DDPM, DDIM, DPM-Solver++, PC, the
    bridges, and the posterior samplers of `jaxir.inverse`). XLA reports the memory of the
    compiled gradient without running it:
    '''),
    code(r'''
    def toy_model(x, t, c=None):  # any smooth network will do: the memory is the loop's
        return jnp.tanh(x) * (1.0 + t)

    vp = sdes.VPSDE()
    x_img = jax.random.normal(jax.random.key(0), (8, 32, 32, 3))

    def grad_temp_mib(n, checkpoint):
        def loss(x):
            return jnp.sum(samplers.ddim_sample(jax.random.key(0), toy_model, vp, x_init=x,
                                                num_steps=n, checkpoint=checkpoint).x ** 2)
        compiled = jax.jit(jax.grad(loss)).lower(x_img).compile()  # compiled, not run
        return compiled.memory_analysis().temp_size_in_bytes / 2**20

    print("N     " + "".join(f"{str(ck):>10s}" for ck in (False, True, "sqrt")) + "   MiB")
    for n in (10, 100, 1000):
        print(f"{n:<6d}" + "".join(f"{grad_temp_mib(n, ck):10.2f}" for ck in (False, True, "sqrt")))
    print("N = 1000 as (blocks, block size, remainder):", samplers.sqrt_blocks(1000))
    '''),
    md(r'''
    **Learned grids** (after Watson et al., ICLR 2022, "Learning fast samplers for diffusion
    models by differentiating through sample quality"). Samplers take an explicit time grid,
    `timesteps=` (strictly decreasing in $[t_{\min}, T]$), and are differentiable with respect
    to it; `samplers.timesteps_from_logits` maps any real vector to a valid grid. So the $K$
    times of a $K$-step DDIM can be learned by Adam on a distance between its samples and
    exact draws. The target: the 25-mode Gaussian mixture in $\mathbb R^8$ of the MCGdiff
    benchmark, whose exact ε-model drives the sampler; the loss: the sliced Wasserstein
    distance $\mathrm{SW}_2^2$ between 256 samples and 256 exact draws (the initial noise and
    the draws fresh at every step, so the gradient is through the sampler only). $K = 4$.
    '''),
    code(r'''
    from jaxir import metrics, schedules
    from jaxir.bench import gmm

    problem = gmm.make_problem(jax.random.key(3), 8, 1)   # its prior: 25 modes in R^8
    chain = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
    mix_fn = gmm.gmm_model_fn(problem, chain)             # the exact ε-model of that prior
    K = 4
    default_ts = samplers.time_grid(chain, K)[0]          # DDIM's "leading" grid

    def generate(ts, key, n):
        return samplers.ddim_sample(key, mix_fn, chain, (n, 8), timesteps=ts).x

    def sw_loss(z, key):
        k1, k2, k3 = jax.random.split(key, 3)
        x = generate(samplers.timesteps_from_logits(chain, z), k1, 256)
        return metrics.sliced_wasserstein(k3, x, gmm.prior_sample(k2, problem, 256), 64, p=2) ** 2

    n_adam = 200 if QUICK else 800
    adam = optax.adam(optax.cosine_decay_schedule(0.05, n_adam))

    @jax.jit
    def learn_step(z, state, key):
        val, g = jax.value_and_grad(sw_loss)(z, key)
        upd, state = adam.update(g, state)
        return optax.apply_updates(z, upd), state, val

    z = samplers.logits_from_timesteps(chain, default_ts)
    adam_state, sw_history = adam.init(z), []
    for i in range(n_adam):
        z, adam_state, val = learn_step(z, adam_state, jax.random.key(1000 + i))
        sw_history.append(float(val))
    learned_ts = samplers.timesteps_from_logits(chain, z)
    print("default grid:", np.round(default_ts, 3))
    print("learned grid:", np.round(np.asarray(learned_ts), 3))
    '''),
    md(r'''
    On fresh draws (not used in training), against the noise floor (the same distance between
    two independent sets of exact draws). A schedule is saved as JSON
    (`samplers.save_schedule`, no pickle) and loaded with `samplers.load_schedule`, which
    checks it against the SDE.
    '''),
    code(r'''
    ka, kb, kc, kd = jax.random.split(jax.random.key(77), 4)
    n_eval = 2000
    target, other = gmm.prior_sample(ka, problem, n_eval), gmm.prior_sample(kb, problem, n_eval)

    def sw_to_target(x):
        return float(metrics.sliced_wasserstein(kd, x, target, 256, p=2))

    x_default = generate(jnp.asarray(default_ts, jnp.float32), kc, n_eval)
    x_learned = generate(learned_ts, kc, n_eval)
    x_50 = samplers.ddim_sample(kc, mix_fn, chain, (n_eval, 8), num_steps=50).x
    print(f"SW2 to fresh exact draws: 4 steps default {sw_to_target(x_default):.2f}, "
          f"4 steps learned {sw_to_target(x_learned):.2f}, 50 steps {sw_to_target(x_50):.2f}; "
          f"exact vs exact {sw_to_target(other):.2f}")

    path = samplers.save_schedule(Path(tempfile.mkdtemp()) / "gmm_ddim_k4.json", learned_ts,
                                  sde=chain, sampler="ddim", meta={"K": K})
    print("reloaded equal:", np.array_equal(samplers.load_schedule(path, chain).timesteps,
                                            np.asarray(learned_ts)))

    fig, ax = plt.subplots(1, 3, figsize=(12, 3.6))
    ax[0].semilogy(sw_history); ax[0].set(xlabel="Adam step", ylabel="SW₂² (training batch)")
    for a, x, title in ((ax[1], x_default, "DDIM 4 steps, default grid"),
                        (ax[2], x_learned, "DDIM 4 steps, learned grid")):
        a.scatter(*np.asarray(target[:1000, :2]).T, s=2, c="0.75", label="exact")
        a.scatter(*np.asarray(x[:1000, :2]).T, s=2, label="sampler")
        a.set_title(title + " (coords 1–2)", fontsize=9); a.set_aspect("equal")
        a.legend(fontsize=7, markerscale=4)
    plt.tight_layout(); plt.show()
    '''),
    md(r'''
    The learned grid moves much more of the mass to the right modes (lower SW₂) but, at four
    steps, it does so with samples *between* modes: the distance rewards the right marginals
    more than sharp modes, so what a grid is learned against matters as much as the learning.
    `experiments/learned_schedules/` runs this for K = 4, 6, 10, for DDIM (also with one η per
    step), DPM-Solver++, and DDRM / ΠGDM on exact posteriors, on held-out problems, and reports
    the off-mode fraction and the mode weights beside SW₂ and MMD.
    '''),
    code(r'''
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)  # the temporary training run of section 1
    '''),
]

# ==== end of notebooks ====


# --------------------------------------------------------------------------------------------
KERNEL = "jaxir-build-python"


def _kernel_dir() -> str:
    """A throw-away Jupyter data folder whose kernelspec runs this very Python."""
    import json
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="jaxir_nb_"))
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jaxir", "language": "python"}))
    return str(root)


def build(name: str, cells: list, execute: bool = True) -> Path:
    """Write ``name.ipynb``; with ``execute`` (the default, what git holds) run it first with
    its QUICK settings so the committed file shows its outputs (plots visible when browsing)."""
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    for i, c in enumerate(nb.cells):  # stable cell ids
        c.id = f"c{i:02d}"
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    if execute:
        import os
        import tempfile

        import nbclient

        old = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "MPLBACKEND")}
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [_kernel_dir(),
                                                                   old["JUPYTER_PATH"]]))
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        try:
            with tempfile.TemporaryDirectory() as cwd:
                nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600, record_timing=False,
                                        resources={"metadata": {"path": cwd}}).execute()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
    nbformat.validate(nb)
    path = HERE / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def main(argv: list[str]) -> None:
    execute = "--no-execute" not in argv
    names = [a for a in argv if not a.startswith("--")]
    for name, cells in NOTEBOOKS.items():
        if not names or any(a in name for a in names):
            print("wrote", build(name, cells, execute).relative_to(HERE.parent), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
