"""Mutation testing of jaxir's numerical core (issue 18 item 4).

Plants one-token bugs — a flipped sign, swapped operands, an off-by-one index, σ_t ↔ σ_s, a
dropped factor (``**2`` → ``**1``), ``sqrt`` → ``abs`` — one at a time in a *private copy* of
the repository (``git archive <commit>`` into a scratch directory; the shared working tree is
never touched), runs a targeted test selection for the mutated module with ``pytest -x`` under a
wall-clock limit, and records which test killed the mutant (the first failing test id) or that
it survived.

Every mutant is a record ``(id, file, line, original, replacement, what)`` in :data:`MUTANTS`
below, with its test selection: ``stage1`` (a few fast tests that should kill it, run first) and,
only if those all pass, ``stage2`` (every test file that exercises the module, from
:data:`MODULE_TESTS`) before a mutant is declared a survivor. A timeout is reported as its own
category ("timeout"), not as a kill. Survivors are explained in :data:`EXPLAIN` (an equivalent
mutant, with the reason its change cannot be observed, or the test gap and the test that now
closes it).

Usage (from the repository root; takes hours on 2 shared CPU cores, so run it niced)::

    nice -n 10 .venv/bin/python experiments/tools/mutants.py --check        # all mutants apply
    nice -n 10 .venv/bin/python experiments/tools/mutants.py                 # ROUND1, resumable
    nice -n 10 .venv/bin/python experiments/tools/mutants.py --all           # every mutant
    nice -n 10 .venv/bin/python experiments/tools/mutants.py --only ddrm-1 sdes-3 --rerun
    nice -n 10 .venv/bin/python experiments/tools/mutants.py --baseline --all   # the control
    .venv/bin/python experiments/tools/mutants.py --report                  # rewrite the .md

The committed table's round: ``--commit 4efd818 --all --extra`` with the files of
:data:`REPRO_EXTRA` (line numbers in :data:`MUTANTS` are those of 4efd818; ``--check`` says
whether they still apply to another commit). ``--results`` writes another JSON.

Results go to ``experiments/tools/mutants_results.json`` (one entry per mutant, written after
each mutant so that a run can be resumed) and the table ``mutants_results.md``. CI does not run
this script.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS_JSON = HERE / "mutants_results.json"
RESULTS_MD = HERE / "mutants_results.md"

# ---------------------------------------------------------------------------- test selections
OS = "tests/test_oracle_samplers.py::"
OB = "tests/test_oracle_bridges.py::"
OIN = "tests/test_oracle_inverse.py::"
TR = "tests/test_transcriptions.py::"
MC = "tests/test_mcgdiff.py::"


def oi(*cases):
    """Node ids of ``test_oracle_inverse.py::test_own_law`` cases."""
    return [f"{OIN}test_own_law[{c}]" for c in cases]


SAMPLER_FILES = ["tests/test_oracle_samplers.py", "tests/test_samplers.py",
                 "tests/test_learned_schedules.py"]
BRIDGE_SAMPLER_FILES = ["tests/test_oracle_bridges.py", "tests/test_irsde.py",
                        "tests/test_resshift.py", "tests/test_cddb.py",
                        "tests/test_bridge_samplers.py"]
INVERSE_FILES = ["tests/test_oracle_inverse.py", "tests/test_transcriptions.py",
                 "tests/test_inverse.py", "tests/test_inverse_guided.py", "tests/test_mcgdiff.py"]

#: stage 2: every test file that exercises a module (run only for stage-1 survivors).
MODULE_TESTS = {
    "jaxir/schedules.py": ["tests/test_schedules.py", "tests/test_sdes.py",
                           "tests/test_oracle_samplers.py", "tests/test_irsde.py",
                           "tests/test_bridges.py", "tests/test_learned_schedules.py"],
    "jaxir/sdes.py": ["tests/test_sdes.py", "tests/test_exact.py", "tests/test_bridges.py",
                      "tests/test_irsde.py", "tests/test_oracle_samplers.py",
                      "tests/test_samplers.py", "tests/test_oracle_bridges.py"],
    "jaxir/predictions.py": ["tests/test_exact.py", "tests/test_samplers.py",
                             "tests/test_oracle_samplers.py"],
    "jaxir/exact.py": ["tests/test_exact.py", "tests/test_flow.py",
                       "tests/test_oracle_samplers.py", "tests/test_inverse.py"],
    "jaxir/bridges.py": ["tests/test_bridges.py", "tests/test_bridge_samplers.py",
                         "tests/test_cddb.py", "tests/test_oracle_bridges.py"],
    "jaxir/samplers/_ancestral.py": SAMPLER_FILES,
    "jaxir/samplers/_common.py": SAMPLER_FILES,
    "jaxir/samplers/_dpm.py": SAMPLER_FILES,
    "jaxir/samplers/_pc.py": SAMPLER_FILES,
    "jaxir/samplers/_flow.py": ["tests/test_flow.py", "tests/test_oracle_samplers.py"],
    "jaxir/samplers/_irsde.py": BRIDGE_SAMPLER_FILES,
    "jaxir/samplers/_bridge.py": BRIDGE_SAMPLER_FILES,
    "jaxir/samplers/_resshift.py": BRIDGE_SAMPLER_FILES,
    "jaxir/samplers/_cddb.py": BRIDGE_SAMPLER_FILES,
    "jaxir/inverse/_driver.py": INVERSE_FILES,
    "jaxir/inverse/_common.py": INVERSE_FILES,
    "jaxir/inverse/_ddrm.py": INVERSE_FILES,
    "jaxir/inverse/_dps.py": INVERSE_FILES,
    "jaxir/inverse/_pigdm.py": INVERSE_FILES,
    "jaxir/inverse/_ddnm.py": INVERSE_FILES,
    "jaxir/inverse/_diffpir.py": INVERSE_FILES,
    "jaxir/inverse/_ilvr.py": INVERSE_FILES,
    "jaxir/inverse/_repaint.py": INVERSE_FILES,
    "jaxir/inverse/_mcg.py": INVERSE_FILES,
    "jaxir/inverse/_gdp.py": INVERSE_FILES,
    "jaxir/inverse/_smc.py": ["tests/test_mcgdiff.py", "tests/test_inverse.py",
                              "tests/test_inverse_fps.py"],
    "jaxir/inverse/_daps.py": ["tests/test_inverse_daps.py", "tests/test_inverse_pnpdm.py",
                               "tests/test_inverse_enkg.py"],
    "jaxir/inverse/_reddiff.py": ["tests/test_inverse_reddiff.py", "tests/test_inverse_daps.py"],
    "jaxir/inverse/_pnpdm.py": ["tests/test_inverse_pnpdm.py", "tests/test_inverse_daps.py"],
    "jaxir/inverse/_enkg.py": ["tests/test_inverse_enkg.py", "tests/test_inverse_daps.py"],
    "jaxir/inverse/_fps.py": ["tests/test_inverse_fps.py"],
}


def M(id, file, line, orig, repl, what, stage1, occurrence=1):
    """One mutant: replace the ``occurrence``-th ``orig`` on ``line`` of ``file`` by ``repl``."""
    return dict(id=id, file=file, line=line, orig=orig, repl=repl, what=what,
                stage1=list(stage1), occurrence=occurrence)


SCH, SDE, PRE, EXA, BRI = ("jaxir/schedules.py", "jaxir/sdes.py", "jaxir/predictions.py",
                           "jaxir/exact.py", "jaxir/bridges.py")
ANC, COM, DPM, PC, FLO = ("jaxir/samplers/_ancestral.py", "jaxir/samplers/_common.py",
                          "jaxir/samplers/_dpm.py", "jaxir/samplers/_pc.py",
                          "jaxir/samplers/_flow.py")
IRS, BSA, RES, CDB = ("jaxir/samplers/_irsde.py", "jaxir/samplers/_bridge.py",
                      "jaxir/samplers/_resshift.py", "jaxir/samplers/_cddb.py")
DRV, ICO = "jaxir/inverse/_driver.py", "jaxir/inverse/_common.py"
INV = "jaxir/inverse/_{}.py".format

#: The mutants. ``stage1`` lists the tests tried first (fast ones first).
MUTANTS = [
    # ---- schedules ---------------------------------------------------------------------
    M("sched-1", SCH, 59, "beta_start, beta_end, n", "beta_end, beta_start, n",
      "linear β schedule runs backwards (endpoints swapped)",
      ["tests/test_schedules.py::test_linear_endpoints_and_alphas_cumprod"]),
    M("sched-2", SCH, 70, "(1 + s)", "(1 - s)", "cosine schedule: 1 + s → 1 − s in the angle",
      ["tests/test_schedules.py::test_cosine_matches_formula_and_clip"]),
    M("sched-3", SCH, 116, "log1p(-betas)", "log1p(betas)", "ᾱ = Π(1 + β) instead of Π(1 − β)",
      ["tests/test_schedules.py::test_linear_endpoints_and_alphas_cumprod"]),
    M("sched-4", SCH, 143, ".astype(int) - 1", ".astype(int) - 0",
      "'trailing' respacing off by one (first step at N instead of N − 1)",
      ["tests/test_schedules.py", OS + "test_time_grids_are_the_official_ones"]),
    M("sched-5", SCH, 153, "[-1]]", "[0]]",
      "respaced grid: last step goes to index 0 instead of the data (−1)",
      ["tests/test_schedules.py", OS + "test_time_grids_are_the_official_ones"]),
    M("sched-6", SCH, 164, "t**2", "t**1", "∫β: ½t²(β_max − β_min) → ½t(β_max − β_min)",
      ["tests/test_schedules.py", "tests/test_sdes.py::test_closed_forms_match_autodiff"]),
    M("sched-7", SCH, 187, "(lo - hi)", "(hi - lo)", "Karras σ grid ramps the wrong way",
      ["tests/test_schedules.py::test_karras_grid"]),
    M("sched-8", SCH, 203, "f[1:-1]", "f[:-2]", "IR-SDE θ_i = 1 − ᾱ_i instead of 1 − ᾱ_{i+1}",
      ["tests/test_schedules.py::test_irsde_theta_schedule"]),
    # ---- sdes --------------------------------------------------------------------------
    M("sdes-1", SDE, 90, "dvar - 2.0", "dvar + 2.0", "generic g² = dσ²/dt + 2fσ² (sign)",
      ["tests/test_sdes.py::test_closed_forms_match_autodiff",
       OS + "test_reverse_sde_on_other_sdes_from_their_own_prior"]),
    M("sdes-2", SDE, 106, "scale**2 * sig_s", "scale * sig_s",
      "transition variance σ_t² − a σ_s² (a not squared)",
      ["tests/test_sdes.py::test_transition_composes", OS + "test_pc_predictor_only_matches_its_law"]),
    M("sdes-3", SDE, 168, "-0.5 * B", "-1.0 * B", "VP mean scale e^{−∫β} instead of e^{−½∫β}",
      ["tests/test_sdes.py::test_closed_forms_match_autodiff"]),
    M("sdes-4", SDE, 143, "-0.5 * self.beta", "-1.0 * self.beta", "VP drift −β x instead of −½β x (VPSDE and DiscreteVPSDE)",
      ["tests/test_sdes.py::test_closed_forms_match_autodiff"]),
    M("sdes-5", SDE, 191, "-2.0 * self._B", "-1.0 * self._B", "sub-VP g² with e^{−∫β} (not e^{−2∫β})",
      ["tests/test_sdes.py::test_closed_forms_match_autodiff"]),
    M("sdes-6", SDE, 212, "s**2 - self.sigma_min**2", "s**2 + self.sigma_min**2",
      "VE marginal variance σ(t)² + σ_min² instead of σ(t)² − σ_min²",
      ["tests/test_sdes.py", OS + "test_reverse_sde_on_other_sdes_from_their_own_prior"]),
    M("sdes-7", SDE, 284, ".astype(jnp.int32) - 1", ".astype(jnp.int32) - 0",
      "DiscreteVPSDE β(t) read off the next segment (off by one)",
      ["tests/test_sdes.py", OS + "test_reverse_sde_matches_its_law"]),
    M("sdes-8", SDE, 292, "(jnp.asarray(i) + 1)", "(jnp.asarray(i) + 0)",
      "index_to_time: t = i/N instead of (i + 1)/N",
      ["tests/test_sdes.py::test_ddpm_mapping_both_ways", OIN + "test_own_law[ilvr-sr-s10-stop200]"]),
    M("sdes-9", SDE, 335, "self.thetas[0]", "self.thetas[1]",
      "IR-SDE θ̄ subtracts θ_1 instead of θ_0", ["tests/test_irsde.py", "tests/test_sdes.py"]),
    M("sdes-10", SDE, 342, "-2.0 * c", "-1.0 * c", "IR-SDE variance λ²(1 − e^{−θ̄}) (factor 2 dropped)",
      ["tests/test_sdes.py::test_closed_forms_match_autodiff", "tests/test_irsde.py"]),
    M("sdes-11", SDE, 348, "1.0 - a", "1.0 + a", "mean-reverting offset (1 + α)μ",
      ["tests/test_sdes.py", "tests/test_irsde.py"]),
    M("sdes-12", SDE, 354, "jnp.ceil", "jnp.floor", "IR-SDE rate θ_i read off the previous step",
      ["tests/test_sdes.py::test_closed_forms_match_autodiff", "tests/test_irsde.py",
       OB + "test_irsde_matches_its_law"]),
    M("sdes-13", SDE, 386, "g**2", "g**1", "reverse drift f − c g s (g not squared)",
      ["tests/test_sdes.py::test_reverse_sde_and_pf_ode_drifts",
       OS + "test_reverse_sde_matches_its_law"]),
    M("sdes-14", SDE, 385, "0.5 if", "1.0 if", "probability-flow ODE with the SDE's factor 1",
      ["tests/test_sdes.py::test_reverse_sde_and_pf_ode_drifts",
       OS + "test_probability_flow_ode_matches_its_law"]),
    # ---- predictions -------------------------------------------------------------------
    M("pred-1", PRE, 72, "ds * xc - s * u", "ds * xc + s * u", "velocity → x̂_0: sign of σ u",
      ["tests/test_exact.py::test_prediction_conversions_round_trip",
       "tests/test_samplers.py::test_prediction_types_give_same_sampler"]),
    M("pred-2", PRE, 76, "(xc - s * pred)", "(xc + s * pred)", "ε → x̂_0: x + σ ε̂",
      ["tests/test_exact.py::test_prediction_conversions_round_trip"]),
    M("pred-3", PRE, 78, "(xc - a * pred) / s", "(xc - s * pred) / s", "x0 → ε: σ in place of α",
      ["tests/test_exact.py::test_prediction_conversions_round_trip",
       "tests/test_samplers.py::test_prediction_types_give_same_sampler"]),
    M("pred-4", PRE, 84, "(s * xc + a * pred)", "(s * xc - a * pred)", "v → ε: sign of α v",
      ["tests/test_exact.py::test_prediction_conversions_round_trip",
       "tests/test_samplers.py::test_prediction_types_give_same_sampler"]),
    M("pred-5", PRE, 99, "-eps / s", "-eps * s", "score = −ε σ instead of −ε/σ",
      ["tests/test_exact.py", "tests/test_samplers.py::test_prediction_types_give_same_sampler"]),
    M("pred-6", PRE, 100, "a * eps - s * x0", "a * eps + s * x0", "v = α ε + σ x_0 (sign)",
      ["tests/test_exact.py::test_prediction_conversions_round_trip",
       "tests/test_samplers.py::test_prediction_types_give_same_sampler"]),
    # ---- exact -------------------------------------------------------------------------
    M("exact-1", EXA, 98, "a**2 * self.evals", "a * self.evals",
      "Gaussian noised covariance α Σ + σ² (α not squared)",
      ["tests/test_exact.py::test_gaussian_score_is_grad_of_marginal_log_prob"]),
    M("exact-2", EXA, 115, "s * z / c", "a * z / c", "Gaussian E[ε | x_t] with α in place of σ",
      ["tests/test_exact.py", OS + "test_ddim_matches_its_law"]),
    M("exact-3", EXA, 135, "sigma_y**2", "sigma_y**1", "posterior: noise variance σ_y instead of σ_y²",
      ["tests/test_exact.py::test_gaussian_posterior_against_information_form"]),
    M("exact-4", EXA, 139, "cov - hmatmul", "cov + hmatmul", "posterior covariance Σ + K A Σ",
      ["tests/test_exact.py::test_gaussian_posterior_against_information_form"]),
    M("exact-5", EXA, 218, "+ s**2", "+ s**1", "GMM noised variance α²Σ + σ (σ not squared)",
      ["tests/test_exact.py::test_gmm_score_and_denoiser"]),
    M("exact-6", EXA, 220, "jnp.log(self.weights) + logn", "jnp.log(self.weights) - logn",
      "GMM responsibilities with −log N", ["tests/test_exact.py::test_gmm_score_and_denoiser"]),
    M("exact-7", EXA, 262, "jnp.log(self.weights) + loglik", "jnp.log(self.weights) - loglik",
      "GMM posterior weights ∝ w_k / N(y; …)",
      ["tests/test_exact.py::test_gmm_posterior_against_quadrature_1d"]),
    M("exact-8", EXA, 321, "- (1 - t) * target.cov", "+ (1 - t) * target.cov",
      "interpolant velocity: C_t = tΣ_1 + (1 − t)Σ_0",
      ["tests/test_flow.py", OS + "test_flow_sample_matches_its_law"]),
    # ---- bridges -----------------------------------------------------------------------
    M("bri-1", BRI, 67, "a**2 * s_t**2", "a * s_t**2", "x_T | x_t variance σ_T² − a σ_t²",
      ["tests/test_bridges.py::test_h_closed_form_equals_autodiff"]),
    M("bri-2", BRI, 81, "bcast(a / v, x)", "bcast(1 / v, x)",
      "Doob h-term without the transition scale a", ["tests/test_bridges.py"]),
    M("bri-3", BRI, 116, "+ bcast(g**2, x) * self.h", "- bcast(g**2, x) * self.h",
      "bridge drift f − g² h (h-term sign)",
      ["tests/test_bridges.py::test_bridge_simulation_follows_its_law_and_is_pinned_at_y"]),
    M("bri-4", BRI, 128, "wy = a * s_t", "wy = a_t * s_t",
      "bridge marginal weight on y with α_t in place of a = α_T/α_t",
      ["tests/test_bridges.py::test_bridge_marginal_is_the_gaussian_product"]),
    M("bri-5", BRI, 137, "+ bcast(a, x0) * m_t)", "- bcast(a, x0) * m_t)",
      "bridge marginal mean: sign of the offset term a m_t",
      ["tests/test_bridges.py::test_bridge_marginal_is_the_gaussian_product"]),
    M("bri-6", BRI, 198, ".astype(jnp.int32) - 1", ".astype(jnp.int32) - 0",
      "Brownian β(t) read off the next segment (off by one)",
      ["tests/test_bridges.py::test_bridge_sdes_have_the_hand_written_coefficients"]),
    M("bri-7", BRI, 216, "2.0 * jnp", "1.0 * jnp", "EDM-VE g² = t instead of 2t",
      ["tests/test_bridges.py::test_bridge_sdes_have_the_hand_written_coefficients"]),
    M("bri-8", BRI, 277, "bcast(v / denom, x0)", "bcast(vs / denom, x0)",
      "bridge posterior q(x_s | x_0, x_t): weight of x_0 with σ_s² in place of v",
      [OB + "test_i2sb_matches_its_law", "tests/test_bridges.py"]),
    M("bri-9", BRI, 279, "vs * v / denom", "vs * vs / denom",
      "bridge posterior variance σ_s⁴/(…) instead of σ_s² v/(…)",
      [OB + "test_i2sb_matches_its_law"]),
    M("bri-10", BRI, 302, "std**2", "std**1", "bridge score −(x − m)/std (std not squared)",
      [OB + "test_ddbm_heun_with_churn_matches_its_law"]),
    M("bri-13", BRI, 160, "self.bridge.drift(x, t)", "self.bridge.sde.drift(x, t)",
      "reverse bridge drift without its Doob h-term (f − c g² s instead of f + g² h − c g² s)",
      [OB + "test_ddbm_heun_with_churn_matches_its_law[ve-10]"]),
    M("bri-11", BRI, 324, "(b * sigma_data**2", "(a * sigma_data**2",
      "DDBM c_skip with the y-weight a in place of b",
      ["tests/test_bridge_samplers.py"]),
    # ---- samplers: DDPM / DDIM / grid ----------------------------------------------------
    M("anc-1", ANC, 41, "c0 = a_s * v", "c0 = a * v", "DDPM posterior: x̂_0 weight with a in place of α_s",
      [OS + "test_ddpm_matches_its_law[fixed_small-10]"]),
    M("anc-2", ANC, 42, "ct = a * sig_s", "ct = a_s * sig_s", "DDPM posterior: x_t weight with α_s in place of a",
      [OS + "test_ddpm_matches_its_law[fixed_small-10]"]),
    M("anc-3", ANC, 44, "tau2 = sig_s**2 * v", "tau2 = sig_t**2 * v",
      "DDPM β̃ with σ_t in place of σ_s (= β, the fixed-large variance)",
      [OS + "test_ddpm_matches_its_law[fixed_small-10]", OS + "test_ddpm_matches_its_law"]),
    M("anc-4", ANC, 47, "jnp.where(sig_s > 0, v, tau2)", "jnp.where(sig_s > 0, tau2, v)",
      "fixed_large: branches swapped (β̃ on inner steps, β on the last)",
      [OS + "test_ddpm_matches_its_law[fixed_large-10]"]),
    M("anc-5", ANC, 58, "sig_s**2 - c**2", "sig_s**2 - c", "DDIM direction √(σ_s² − c) (c not squared)",
      [OS + "test_ddim_matches_its_law[1.0-10]", OS + "test_ddim_matches_its_law"]),
    M("anc-6", ANC, 33, "a**2 * sig_s**2", "a * sig_s**2", "transition variance v = σ_t² − a σ_s²",
      [OS + "test_ddpm_matches_its_law[fixed_small-10]", OS + "test_ddim_matches_its_law"]),
    M("anc-7", ANC, 108, "(1.0 - known[1])", "(1.0 - known[0])",
      "Palette paste: keeps x where (1 − value) instead of (1 − mask)",
      [OS + "test_known_pixels_are_pasted_and_free_coordinates_follow_their_law"]),
    M("anc-8", ANC, 228, "jnp.asarray(eta)[i]", "jnp.asarray(eta)[i + 1]",
      "per-step η read one step ahead", ["tests/test_learned_schedules.py",
                                         OS + "test_ddim_with_one_eta_per_step_matches_its_law"]),
    M("com-1", COM, 116, "(prev + 1) * scale", "(prev + 0) * scale",
      "respaced grid: each step lands one DDPM index too early",
      [OS + "test_time_grids_are_the_official_ones"]),
    M("com-2", COM, 129, "ts[1:]", "ts[:-1]", "continuous grid: ts_next shifted (first step goes nowhere)",
      [OS + "test_ddim_on_a_continuous_sde", OS + "test_time_grids_are_the_official_ones"]),
    # ---- DPM-Solver++, PC, flow ------------------------------------------------------------
    M("dpm-1", DPM, 105, "1.0 + 0.5 / r", "1.0 + 1.0 / r", "2M multistep weight 1 + 1/r instead of 1 + 1/(2r)",
      [OS + "test_dpm_solver_2m_matches_its_law"]),
    M("dpm-2", DPM, 108, "jnp.expm1(-h)", "jnp.expm1(h)", "exponential integrator e^{h} − 1",
      [OS + "test_dpm_solver_2m_matches_its_law"]),
    M("dpm-3", DPM, 104, "(i > 0)", "(i > 1)", "second-order update starts one step late",
      [OS + "test_dpm_solver_2m_matches_its_law"]),
    M("pc-1", PC, 43, "* 2.0 * alpha", "* 1.0 * alpha", "Langevin step ε = α(snr‖z‖/‖g‖)² (factor 2 lost)",
      [OS + "test_pc_with_langevin_corrector_equals_the_score_sde_transcription"]),
    M("pc-2", PC, 104, "bcast(std**2, x) * score_fn", "bcast(std, x) * score_fn",
      "reverse-diffusion predictor G s with G = √v not squared",
      [OS + "test_pc_predictor_only_matches_its_law[reverse_diffusion-10]"]),
    M("pc-3", PC, 111, "g * jnp.sqrt(dt)", "g * jnp.abs(dt)", "Euler–Maruyama noise g dt instead of g √dt",
      [OS + "test_pc_predictor_only_matches_its_law[euler_maruyama-10]"]),
    M("pc-4", PC, 115, "i == n - 1", "i == n - 2", "noise removed on the second-to-last step, not the last",
      [OS + "test_pc_predictor_only_matches_its_law",
       OS + "test_pc_with_langevin_corrector_equals_the_score_sde_transcription"]),
    M("pc-5", PC, 101, "alpha = a**2 if", "alpha = a if", "Langevin α = a instead of a² (1 − β_i)",
      [OS + "test_pc_with_langevin_corrector_equals_the_score_sde_transcription"]),
    M("flow-1", FLO, 52, "(y, 1.0 - u, cond)", "(y, u, cond)", "flow ODE queries the velocity at u instead of t = 1 − u",
      [OS + "test_flow_sample_matches_its_law", "tests/test_flow.py"]),
    # ---- IR-SDE / GOUB, I2SB / DDBM, ResShift, CDDB --------------------------------------
    M("irsde-1", IRS, 93, "x - (process.drift", "x + (process.drift", "reverse step x + [b − c g² s]",
      [OB + "test_irsde_matches_its_law[False-30]"]),
    M("irsde-2", IRS, 141, "0.5 if ode", "1.0 if ode", "IR-SDE reverse ODE with the SDE's factor 1 (mean-ODE)",
      [OB + "test_irsde_matches_its_law[True-30]", OB + "test_irsde_matches_its_law"]),
    M("irsde-3", IRS, 199, "t >= bridge.T", "t > bridge.T", "GOUB uses the score on its first step t = T",
      [OB + "test_goub_mean_ode_is_its_deterministic_recursion",
       OB + "test_goub_stochastic_sampler_matches_its_law"]),
    M("irsde-4", IRS, 66, "A * (1.0 - C**2)", "C * (1.0 - C**2)", "optimal reverse state: C in place of A",
      ["tests/test_irsde.py::test_optimal_prev_equals_gaussian_posterior_mean"]),
    M("i2sb-1", BSA, 106, "x0 = x - bcast", "x0 = x + bcast", "I2SB x̂_0 = x_t + σ_t ε̂",
      [OB + "test_i2sb_matches_its_law[10]"]),
    M("i2sb-2", BSA, 113, "jnp.where(is_last, mean, mean + noise)", "jnp.where(is_last, mean + noise, mean)",
      "I2SB: noise only on the last step (branches swapped)", [OB + "test_i2sb_matches_its_law[10]"]),
    M("i2sb-3", BSA, 41, "(n - 1) / (count - 1)", "(n - 1) / (count - 0)",
      "space_indices stride (n − 1)/count", [OB + "test_i2sb_grid_is_the_official_space_indices"]),
    M("ddbm-1", BSA, 197, "0.5 * (d + d2)", "0.5 * (d + d)", "Heun step reduced to Euler (d2 dropped)",
      [OB + "test_ddbm_heun_with_churn_matches_its_law[ve-10]"]),
    M("ddbm-2", BSA, 184, "jnp.sqrt(jnp.abs(dt))", "jnp.abs(jnp.abs(dt))", "churn noise g|dt| instead of g√|dt|",
      [OB + "test_ddbm_heun_with_churn_matches_its_law[ve-10]"]),
    M("res-1", RES, 128, "1.0 - c_t", "1.0 + c_t", "ResShift posterior: x_0 weight 1 + η_{t−1}/η_t",
      ["tests/test_resshift.py::test_posterior_is_gaussian_conditioning_of_the_chain"]),
    M("res-2", RES, 129, "(eta - prev)", "(eta + prev)", "ResShift posterior variance κ² c (η_t + η_{t−1})",
      ["tests/test_resshift.py::test_posterior_is_gaussian_conditioning_of_the_chain"]),
    M("cddb-1", CDB, 92, "x0 - step_size", "x0 + step_size", "CDDB data step up the residual gradient",
      [OB + "test_cddb_matches_its_law[10-False]"]),
    M("cddb-2", CDB, 98, "mean - step_size", "mean + step_size", "CDDB-deep step up the residual gradient",
      [OB + "test_cddb_matches_its_law[10-True]"]),
    # ---- inverse: the driver and shared steps --------------------------------------------
    M("drv-1", DRV, 279, "fn(key, st.x_next, st.s)", "fn(key, st.x_next, st.t)",
      "replacement: y noised to the step's start t instead of its end s",
      oi("projection-inpaint-s10-eta1", "mcg-inpaint-s10-a.3")),
    M("drv-2", DRV, 278, "fn(key, st.x, st.t)", "fn(key, st.x, st.s)",
      "RePaint: known part of x_t noised to level s", oi("repaint-inpaint-s10-j2-r3")),
    M("drv-3", DRV, 251, "step.x_next + bcast", "step.x_next - bcast",
      "guidance added with the opposite sign", oi("pigdm-dense-noiseless-s10-eta0")),
    M("drv-4", DRV, 349, "levels[path[1:] + 1]", "levels[path[1:] + 0]",
      "walk: every move lands one level too low", oi("ddnm-travel-dense-s10-l1-r3",
                                                     "repaint-inpaint-s10-j2-r3")),
    M("drv-5", DRV, 219, "convert(x0c, x, t", "convert(x0, x, t",
      "ε̂ not recomputed after clipping x̂_0", [TR + "test_dps_matches_transcription",
                                            TR + "test_diffpir_clipped_matches_transcription"]),
    M("drv-6", DRV, 384, "np.sum(~up)", "np.sum(up)", "NFE counts the up moves of a walk",
      ["tests/test_inverse_guided.py::test_repaint_schedule_walk", "tests/test_inverse.py"]),
    M("icom-1", ICO, 20, "jax.numpy.zeros_like(eps)", "v",
      "guidance VJP also pulls v back through ε̂", [TR + "test_dps_matches_transcription"]),
    M("icom-2", ICO, 157, "a * ybar + sigma * eps", "a * ybar + a * eps",
      "replacement noise α ε instead of σ ε", oi("projection-inpaint-s10-eta1")),
    M("icom-3", ICO, 116, "uty / jnp.where", "uty * jnp.where", "ȳ = s Uᵀy instead of Uᵀy / s",
      oi("ddrm-dense-s10-eta.85")),
    # ---- DDRM, DPS, ΠGDM, DDNM, DiffPIR --------------------------------------------------
    M("ddrm-1", INV("ddrm"), 59, "rho = sig_y / jnp", "rho = sig_y * jnp", "ρ_i = σ_y s_i instead of σ_y/s_i",
      oi("ddrm-dense-s10-eta.85")),
    M("ddrm-2", INV("ddrm"), 78, "+ eta * sb_s * z", "+ eta_b * sb_s * z",
      "unobserved coordinates draw η_b σ̄ z (η ↔ η_b)", oi("ddrm-dense-s10-eta.5-etab.7")),
    M("ddrm-3", INV("ddrm"), 79, "sb_s * resid", "sb_s * epsb", "'less noisy' rule uses ε̂ instead of the residual",
      oi("ddrm-dense-sy.5-s5", "ddrm-dense-s10-eta.85")),
    M("ddrm-4", INV("ddrm"), 81, "(eta_b * rho) ** 2", "(eta * rho) ** 2",
      "'noisier' rule variance σ̄² − η²ρ² (η for η_b)", oi("ddrm-dense-s10-eta.5-etab.7")),
    M("ddrm-5", INV("ddrm"), 77, "jnp.where(sig_y > 0, sig_y, 1.0)", "jnp.where(sig_y > 0, rho, 1.0)",
      "residual scaled by ρ_i instead of σ_y", oi("ddrm-dense-sy.5-s5", "ddrm-dense-s10-eta.85")),
    M("ddrm-6", INV("ddrm"), 80, "(1.0 - eta_b) * x0b", "(1.0 - eta) * x0b",
      "'noisier' rule mean weight 1 − η on x̄_0 (η for η_b)", oi("ddrm-dense-s10-eta.5-etab.7")),
    M("dps-1", INV("dps"), 67, "_clip(x0, clip_x0)", "_clip(x0, False)",
      "residual taken on the unclipped x̂_0", [TR + "test_dps_matches_transcription"]),
    M("dps-2", INV("dps"), 70, "-zeta)", "zeta)", "DPS step up the residual norm", [TR + "test_dps_matches_transcription"]),
    M("pigdm-1", INV("pigdm"), 67, "(a**2 + sig**2)", "(a + sig**2)", "r_t² = σ²/(α + σ²)",
      oi("pigdm-dense-noisy-s10-eta0")),
    M("pigdm-2", INV("pigdm"), 70, "r2 * s_dy**2 + sigma_y", "r2 * s_dy + sigma_y",
      "noisy gain r² s/(r² s + σ_y²) (s not squared)", oi("pigdm-dense-noisy-s10-eta0")),
    M("pigdm-3", INV("pigdm"), 76, "a_T * A_pinv", "s_T * A_pinv", "start σ_T A⁺y instead of α_T A⁺y",
      oi("pigdm-dense-noiseless-s10-eta0")),
    M("pigdm-4", INV("pigdm"), 78, "a_of(st.s) * a_of(st.t)", "a_of(st.s) * a_of(st.s)",
      "guidance scale √ᾱ_s √ᾱ_s instead of √ᾱ_s √ᾱ_t", oi("pigdm-dense-noiseless-s10-eta0")),
    M("ddnm-1", INV("ddnm"), 95, "x0 - A_pinv", "x0 + A_pinv", "range-space correction with the wrong sign",
      oi("ddnm-dense-s10-eta.85")),
    M("ddnm-2", INV("ddnm"), 96, "c_eta * eps)", "c_eta * z)", "DDNM noise √(1−η²) z instead of √(1−η²) ε̂",
      oi("ddnm-dense-s10-eta.85")),
    M("ddnm-3", INV("ddnm"), 101, "c_eta * sig_s", "eta * sig_s", "DDNM+ λ_i with η instead of √(1−η²)",
      oi("ddnm+-dense-s10-eta.85")),
    M("ddnm-4", INV("ddnm"), 103, "(a_s * rho) ** 2", "(a_s * rho) ** 1", "DDNM+ noise √(σ_s² − aρ) (not squared)",
      oi("ddnm+-dense-s10-eta.85")),
    M("ddnm-5", INV("ddnm"), 110, "* st.state", "* st.x", "time travel re-noises x instead of the last x̂_0",
      oi("ddnm-travel-dense-s10-l1-r3")),
    M("ddnm-6", INV("ddnm"), 97, "state=x0)", "state=x0h)", "time travel re-noises the corrected x̂_0",
      oi("ddnm-travel-dense-s10-l1-r3")),
    M("pir-1", INV("diffpir"), 155, "(a_t / sig_t) ** 2", "(sig_t / a_t) ** 2", "ρ_t = λσ² σ̄_t² instead of λσ²/σ̄_t²",
      oi("diffpir-dense-s10-zeta.1")),
    M("pir-2", INV("diffpir"), 168, "jnp.sqrt(1.0 - zeta)", "jnp.sqrt(1.0 + zeta)", "Eq. 15: √(1 + ζ) on the DDIM part",
      oi("diffpir-dense-s10-zeta.1")),
    M("pir-3", INV("diffpir"), 186, "(s_all**2 + rho)", "(s_all + rho)", "SVD prox denominator s + ρ",
      oi("diffpir-dense-s10-zeta.1")),
    M("pir-4", INV("diffpir"), 199, "1.0 / (2.0 * (L + rho))", "1.0 / (1.0 * (L + rho))",
      "gradient data step twice too long", oi("diffpir-dense-s10-grad2")),
    M("pir-5", INV("diffpir"), 36, "big_n - 1 - seq", "big_n - 0 - seq", "'quad' grid shifted by one DDPM index",
      oi("diffpir-dense-s10-zeta.1", "diffpir-dense-s25-zeta.5")),
    M("pir-6", INV("diffpir"), 148, "/ 2.0, 1e-3", "/ 1.0, 1e-3", "noise level σ_y instead of σ_y/2 (units)",
      oi("diffpir-dense-s10-zeta.1")),
    # ---- ILVR, RePaint, MCG, GDP ---------------------------------------------------------
    M("ilvr-1", INV("ilvr"), 89, "a_s * p.y", "sig_s * p.y", "reference scaled by σ_s instead of α_s",
      oi("ilvr-sr-s10")),
    M("ilvr-2", INV("ilvr"), 90, "- up(A(x))", "+ up(A(x))", "low-pass of x' added instead of removed",
      oi("ilvr-sr-s10")),
    M("ilvr-3", INV("ilvr"), 91, "st.t > t_stop", "st.t >= t_stop", "conditioning range includes t = t_stop",
      oi("ilvr-sr-s10-stop200")),
    M("rep-1", INV("repaint"), 109, "transition_coeffs(st.t, st.s)", "transition_coeffs(st.s, st.t)",
      "undo step uses the reverse transition", oi("repaint-inpaint-s10-j2-r3")),
    M("rep-2", INV("repaint"), 44, "range(k + 1, k + L + 1)", "range(k + 1, k + L)",
      "jump goes up L − 1 levels", ["tests/test_inverse_guided.py::test_repaint_schedule_walk"]),
    M("mcg-1", INV("mcg"), 73, "jnp.sum(r**2)", "jnp.sum(r**1)", "MCG squared norm → sum of residuals",
      oi("mcg-inpaint-s10-a.3", "mcg-dense-s25-a.2")),
    M("gdp-1", INV("gdp"), 118, "/ 2.0 + m -", "/ 2.0 - m -", "learned degradation f(x+1)/2 − M",
      [TR + "test_gdp_learned_degradation_matches_transcription"]),
    M("gdp-2", INV("gdp"), 124, "r_fn(z, y1) / 2.0", "r_fn(z, y1) / 1.0", "residual not halved ([0,1] units)",
      oi("gdp-x0-dense-s10-s2")),
    M("gdp-3", INV("gdp"), 127, "jnp.mean(residual", "jnp.sum(residual", "MSE summed, not averaged",
      oi("gdp-x0-dense-s10-s2")),
    # ---- MCGdiff ------------------------------------------------------------------------
    M("smc-1", INV("smc"), 181, "(a_t / a_s) ** 2", "(a_s / a_t) ** 2", "forward variance with the inverse scale",
      [MC + "test_mcgdiff_matches_float64_transcription"]),
    M("smc-2", INV("smc"), 184, "(cs / a_s) ** 2", "(cs / a_t) ** 2", "accumulated variance V_j divides by α_t",
      [MC + "test_mcgdiff_matches_float64_transcription"]),
    M("smc-3", INV("smc"), 201, "c2 * k * yb", "c2 * k * m", "proposal mean pulls toward m instead of ȳ",
      [MC + "test_mcgdiff_matches_float64_transcription"]),
    M("smc-4", INV("smc"), 223, "sig_s**2 - c**2", "sig_s**2 - c", "DDIM mean √(σ_s² − c) (c not squared)",
      [MC + "test_mcgdiff_matches_float64_transcription"]),
    M("smc-5", INV("smc"), 225, "- log_psi(st.x", "+ log_psi(st.x", "incremental weight multiplies by ψ_j (sign)",
      [MC + "test_mcgdiff_matches_float64_transcription"]),
    M("smc-6", INV("smc"), 225, "j + 1, c**2)", "j, c**2)", "incremental weight uses ψ_j, not ψ_{j+1}",
      [MC + "test_mcgdiff_matches_float64_transcription"]),
    M("smc-10", INV("smc"), 225, ", c**2) - log_psi(st.x[..., :dy], j)", ", c**2)",
      "incremental weight without the 1/ψ_j term (dropped weight term)",
      [MC + "test_mcgdiff_matches_float64_transcription"]),
    M("smc-7", INV("smc"), 228, "ess < resample_threshold", "ess > resample_threshold",
      "adaptive resampling when the ESS is high", [MC + "test_mcgdiff_matches_float64_transcription"]),
    M("smc-8", INV("smc"), 229, "logsumexp(logw, -1) - log_n", "logsumexp(logw, -1) + log_n",
      "log-evidence increment + log N", [MC + "test_mcgdiff_matches_float64_transcription"]),
    M("smc-9", INV("smc"), 240, "mbar + c * z", "mbar - c * z", "unobserved move with −c z (same law, other draws)",
      [MC + "test_mcgdiff_matches_float64_transcription"]),
    # ---- the issue-16 methods in the snapshot: DAPS, RED-diff, PnP-DM, EnKG, FPS -----------
    M("daps-1", INV("daps"), 208, "D(x, lv[j]))", "D(x, lv[j + 1]))", "PF-ODE Euler step queries the next level",
      ["tests/test_inverse_daps.py::test_daps_matches_its_exact_law"]),
    M("daps-2", INV("daps"), 215, "(n_levels + 1.0)", "(n_levels + 0.0)", "learning-rate decay ratio k/n",
      ["tests/test_inverse_daps.py::test_daps_matches_its_exact_law"]),
    M("daps-3", INV("daps"), 219, "tau**2", "tau**1", "likelihood term −∇‖Ax − y‖²/τ (not τ²)",
      ["tests/test_inverse_daps.py::test_daps_matches_its_exact_law"]),
    M("daps-4", INV("daps"), 223, "x0y + sig_next *", "x0y + sig *", "re-noised to ς_k instead of ς_{k+1}",
      ["tests/test_inverse_daps.py::test_daps_matches_its_exact_law"]),
    M("red-1", INV("reddiff"), 122, "w_fn(s / a)", "w_fn(a / s)", "weight of SNR instead of 1/SNR",
      ["tests/test_inverse_reddiff.py"]),
    M("red-2", INV("reddiff"), 134, "(state.before, None)", "(x, None)", "returns μ after the last update",
      ["tests/test_inverse_reddiff.py"]),
    M("red-3", INV("reddiff"), 114, "jnp.sum(reg * mu) / d", "jnp.sum(reg * mu) * d",
      "regulariser multiplied by D instead of averaged", ["tests/test_inverse_reddiff.py"]),
    M("pnp-1", INV("pnpdm"), 122, "1.0 / r**2", "1.0 / r", "likelihood step coupling 1/ρ instead of 1/ρ²",
      ["tests/test_inverse_pnpdm.py::test_pnpdm_matches_its_exact_law"]),
    M("pnp-2", INV("pnpdm"), 124, "jnp.sqrt(c) *", "jnp.abs(c) *", "likelihood draw with std C instead of √C",
      ["tests/test_inverse_pnpdm.py::test_pnpdm_matches_its_exact_law"]),
    M("pnp-3", INV("pnpdm"), 106, "(2.0, True)", "(1.0, True)", "reverse SDE with the ODE's drift factor 1",
      ["tests/test_inverse_pnpdm.py::test_pnpdm_matches_its_exact_law"]),
    M("pnp-4", INV("pnpdm"), 134, "2.0 * sig * (sig - nxt)", "2.0 * nxt * (sig - nxt)",
      "EM noise √(2ς_{i+1}(ς_i − ς_{i+1}))", ["tests/test_inverse_pnpdm.py::test_pnpdm_matches_its_exact_law"]),
    M("enkg-1", INV("enkg"), 130, "(x - D(x, a)) / a", "(x - D(x, b)) / a", "x̂_0 ODE Euler step denoises at the next level",
      ["tests/test_inverse_enkg.py::test_enkg_matches_float64_transcription"]),
    M("enkg-2", INV("enkg"), 148, "x - (step", "x + (step", "ensemble Kalman update with the wrong sign",
      ["tests/test_inverse_enkg.py::test_enkg_matches_float64_transcription"]),
    M("enkg-3", INV("enkg"), 140, "dxs = flat(x)", "dxs = flat(x0)", "ensemble deviation Δx taken from x̂_0 instead of x",
      ["tests/test_inverse_enkg.py::test_enkg_matches_float64_transcription"]),
    M("enkg-4", INV("enkg"), 30, "np.minimum(1 + (n - i)", "np.minimum(2 + (n - i)",
      "one ODE step too many for x̂_0", ["tests/test_inverse_enkg.py::test_plan_is_the_official_one"]),
    M("fps-1", INV("fps"), 140, "c_rate * sg[1:] ** 2", "c_rate * sg[:-1] ** 2", "c_j² from σ of the step's start",
      ["tests/test_inverse_fps.py::test_fps_one_particle_matches_its_exact_law"]),
    M("fps-2", INV("fps"), 182, "(x - a * x0)", "(x - a1 * x0)", "DDIM direction with α_s in place of α_t",
      ["tests/test_inverse_fps.py::test_fps_one_particle_matches_its_exact_law"]),
    M("fps-3", INV("fps"), 144, "/ s_safe**2", "/ s_safe", "measurement noise ρ² = α²σ_y²/s (not s²)",
      ["tests/test_inverse_fps.py::test_fps_one_particle_matches_its_exact_law",
       "tests/test_inverse_fps.py::test_fps_smc_transcription"]),
    M("fps-4", INV("fps"), 164, "m + v * (b - m)", "m + r * (b - m)", "Gaussian conditioning gain r/(v + r)",
      ["tests/test_inverse_fps.py::test_fps_one_particle_matches_its_exact_law"]),
]

_TS, _SD, _EX, _BR = ("tests/test_schedules.py::", "tests/test_sdes.py::", "tests/test_exact.py::",
                      "tests/test_bridges.py::")
_MC1 = MC + "test_mcgdiff_matches_float64_transcription[0.3-systematic-0.5-1.0-0]"

#: The mutants run in this round (2026-12-04, 2 shared CPU cores, ~2 h), in the order they run
#: (modules interleaved so that a partial run already covers every module), each with the
#: smallest stage-1 selection expected to kill it (single parametrised node ids, not files).
#: The kinds issue 18 names come first: a wrong variance term, a dropped weight term, a missing
#: Doob h-term, a time grid shifted by one. The other mutants in :data:`MUTANTS` are defined but
#: not run in this round (``--all`` runs them with their own ``stage1``).
ROUND1: dict[str, list[str]] = {
    "anc-3": [OS + "test_ddpm_matches_its_law[fixed_small-10]"],
    "smc-10": [_MC1],
    "bri-13": [OB + "test_ddbm_heun_with_churn_matches_its_law[ve-10]"],
    "com-1": [OS + "test_time_grids_are_the_official_ones"],
    "sched-4": [_TS + "test_respacing_previous_steps_are_read_off_the_grid[trailing]"],
    "sdes-2": [_SD + "test_transition_composes[vp]",
               _SD + "test_transition_std_is_the_gaussian_composition[vp]"],
    "exact-3": [_EX + "test_gaussian_posterior_against_information_form"],
    "pred-2": [_EX + "test_prediction_conversions_round_trip[VPSDE]"],
    "ddrm-4": oi("ddrm-dense-s10-eta.5-etab.7")
              + [OIN + "test_own_law_in_the_spectral_basis[ddrm-dense-sy.012-s5]"],
    "bri-2": [_BR + "test_h_closed_form_equals_autodiff[ddbm_vp]"],
    "pigdm-1": oi("pigdm-dense-noisy-s10-eta0")
               + [OIN + "test_own_law_in_the_spectral_basis[pigdm-dense-noisy-sy.5-s25-eta0]"],
    "anc-5": [OS + "test_ddim_matches_its_law[1.0-10]"],
    "sdes-8": [_SD + "test_ddpm_mapping_both_ways"],
    "drv-4": oi("ddnm-travel-dense-s10-l1-r3"),
    "exact-1": [_EX + "test_gaussian_score_is_grad_of_marginal_log_prob[VPSDE]"],
    "sched-6": [_SD + "test_closed_forms_match_autodiff[vp]"],
    "smc-5": [_MC1],
    "bri-3": [_BR + "test_bridge_simulation_follows_its_law_and_is_pinned_at_y[ddbm_vp]"],
    "dpm-1": [OS + "test_dpm_solver_2m_matches_its_law[uniform-10]"],
    "pred-3": [_EX + "test_prediction_conversions_round_trip[VPSDE]"],
    "ddrm-1": oi("ddrm-dense-s10-eta.85"),
    "irsde-1": [OB + "test_irsde_matches_its_law[False-30]"],
    "sdes-10": [_SD + "test_closed_forms_match_autodiff[irsde]"],
    "drv-1": oi("projection-inpaint-s10-eta1"),
    "exact-4": [_EX + "test_gaussian_posterior_against_information_form"],
    "bri-1": [_BR + "test_h_closed_form_equals_autodiff[goub]"],
    "pc-2": [OS + "test_pc_predictor_only_matches_its_law[reverse_diffusion-10]"],
    "sched-3": [_TS + "test_linear_endpoints_and_alphas_cumprod"],
    "dps-2": [TR + "test_dps_matches_transcription[linear-ddpm-s10-zeta.3]"],
    "sdes-13": [_SD + "test_reverse_sde_and_pf_ode_drifts"],
    "i2sb-2": [OB + "test_i2sb_matches_its_law[10]"],
    "pir-5": oi("diffpir-dense-s10-zeta.1") + [OIN + "test_diffpir_quad_grid_is_the_official_one"],
    "pred-5": [_EX + "test_prediction_conversions_round_trip[VPSDE]",
               "tests/test_samplers.py::test_prediction_types_give_same_sampler"],
    "exact-2": [_EX + "test_gaussian_score_is_grad_of_marginal_log_prob[VPSDE]",
                OS + "test_ddim_matches_its_law[0.0-10]"],
    "bri-9": [OB + "test_i2sb_matches_its_law[10]"],
    "com-2": [OS + "test_ddim_on_a_continuous_sde"],
    "ddnm-3": oi("ddnm+-dense-s10-eta.85"),
    "sdes-7": [_SD + "test_closed_forms_match_autodiff[ddpm]",
               OS + "test_reverse_sde_matches_its_law[euler-10-False]"],
    "pc-4": [OS + "test_pc_predictor_only_matches_its_law[euler_maruyama-10]"],
    "sched-8": [_TS + "test_irsde_theta_schedule"],
    "pigdm-2": oi("pigdm-dense-noisy-s10-eta0"),
    "ddbm-1": [OB + "test_ddbm_heun_with_churn_matches_its_law[ve-10]"],
    "exact-7": [_EX + "test_gmm_posterior_against_quadrature_1d"],
    "drv-3": oi("pigdm-dense-noiseless-s10-eta0"),
    "bri-4": [_BR + "test_bridge_marginal_is_the_gaussian_product[ddbm_vp]"],
    "dpm-3": [OS + "test_dpm_solver_2m_matches_its_law[uniform-10]",
              OS + "test_dpm_solver_2m_is_second_order_from_its_second_step"],
    "sdes-3": [_SD + "test_closed_forms_match_autodiff[vp]"],
    "ddrm-3": oi("ddrm-dense-sy.5-s5"),
    "flow-1": [OS + "test_flow_sample_matches_its_law[euler-3]"],
    "exact-8": [OS + "test_flow_sample_matches_its_law[euler-3]"],
    "icom-2": oi("projection-inpaint-s10-eta1"),
    "irsde-3": [OB + "test_goub_mean_ode_is_its_deterministic_recursion[30]"],
    "sdes-14": [_SD + "test_reverse_sde_and_pf_ode_drifts"],
    "pir-1": oi("diffpir-dense-s10-zeta.1"),
    "bri-10": [OB + "test_ddbm_heun_with_churn_matches_its_law[ve-10]"],
    "res-2": ["tests/test_resshift.py::test_posterior_is_gaussian_conditioning_of_the_chain"],
    "smc-1": [_MC1],
    "drv-5": [TR + "test_dps_matches_transcription[linear-ddpm-s25-zeta1-clip]",
              TR + "test_dps_matches_transcription[tanh-ddim-s25-eta.5-zeta.5-clip]"],
    "cddb-1": [OB + "test_cddb_matches_its_law[10-False]"],
    "ilvr-3": oi("ilvr-sr-s10-stop200"),
    "rep-1": oi("repaint-inpaint-s10-j2-r3"),
    "gdp-2": oi("gdp-x0-dense-s10-s2"),
    "anc-1": [OS + "test_ddpm_matches_its_law[fixed_small-10]"],
}

#: Why each survivor survives (filled in after a run; rendered into the results table), and how
#: the survivors of earlier rounds were killed. An entry starting with "Equivalent" marks a
#: mutant whose change cannot be observed; it is left out of the kill rate.
EXPLAIN: dict[str, str] = {
    "sdes-2": "Survived stage 1 on 6b24e55: `test_transition_composes` read only the *mean* of "
              "`transition` (its variance check used `transition_coeffs`, which has its own, "
              "unmutated line). Stage 2 on 6b9b5fa killed it (`test_bridges.py::"
              "test_h_closed_form_equals_autodiff[goub]`: the autodiff h-transform differentiates "
              "through `transition`'s std). Closed directly by `tests/test_sdes.py::"
              "test_transition_std_is_the_gaussian_composition` (σ_t² − (α_t/α_s)²σ_s², float32 "
              "tolerance); the mutant is equivalent on VE only (α ≡ 1 there).",
    "dpm-3": "Survived stages 1 + 2 on 6b9b5fa (165 s): a real gap. At 8–20 λ-uniform and 10 "
             "time-uniform steps a second-order update that starts one step late moves the output "
             "law by 0.01–0.3 s.e. at n = 40,000 (the first steps barely reach the output). "
             "Closed by `tests/test_oracle_samplers.py::"
             "test_dpm_solver_2m_is_second_order_from_its_second_step`: 4 λ-uniform steps, where "
             "the same mutant is 52 s.e. (10.7 thresholds) from the float64 law of Alg. 2.",
    "drv-5": "Survived stage 1 on 6b24e55 because its selection was DPS on the DDPM base step, "
             "which uses x̂_0 only (equivalent there, and for DiffPIR, which re-derives ε̂ after "
             "its data step). Not equivalent for DDIM-based steps on a clipped x̂_0 (projection, "
             "DPS with η): stage 2 on 6b9b5fa killed it with `tests/test_transcriptions.py::"
             "test_dps_matches_transcription[tanh-ddim-s25-eta.5-zeta.5-clip]` (guided-diffusion's "
             "`ddim_sample` re-derives ε̂ from the clipped x̂_0), now in its stage-1 selection.",
    "ddrm-4": "Survived stage 1 on 6b24e55 (η = 0.5, η_b = 0.7, σ_y = 0.2: the variance term "
              "(η_b² − η²)ρ² is 0.3–0.4 thresholds of the output law in x coordinates). Stage 2 "
              "on 6b9b5fa killed it (`test_own_law[ddrm-dense-sy.5-s5]`, σ_y = 0.5 at the "
              "defaults η = 0.85, η_b = 1). Now also killed in stage 1 by `tests/"
              "test_oracle_inverse.py::test_own_law_in_the_spectral_basis[ddrm-dense-sy.012-s5]`: "
              "draws and exact law in the operator's basis Vᵀx, where the noisier rule sets the "
              "output variance 4.5e-5 of the top singular direction (5.9e-5 under the mutant).",
    "pigdm-1": "Survived stage 1 on 6b24e55: r_t² enters the gain r²s/(r²s² + σ_y²), which "
               "hardly depends on r² while σ_y² ≪ r²s² (σ_y = 0.2 in every ΠGDM case: 1.0 "
               "threshold in x coordinates). Survived stages 1 + 2 on 6b9b5fa (555 s): a real gap. Closed by `tests/test_oracle_inverse.py::"
               "test_own_law_in_the_spectral_basis[pigdm-dense-noisy-sy.5-s25-eta0]` (σ_y = 0.5 "
               "next to singular values 0.48–1.61, law read in the operator's basis: 5.3 "
               "thresholds).",
    "pir-5": "Survived stage 1 on 6b24e55: a grid one DDPM index off moves the law of a 10-step "
             "run far below z-test resolution (the oracle module's docstring measures 0.1–1.2 "
             "thresholds for such shifts). Stage 2 on 6b9b5fa killed it (`test_own_law["
             "diffpir-blur-s10-fft]`, a case outside its stage-1 selection). Also pinned "
             "directly by `tests/test_oracle_inverse.py::test_diffpir_quad_grid_is_the_official_one` "
             "(the grid compared exactly with a transcription of the official `main_ddpir_*.py` "
             "seq / find_nearest at n = 10, 25, 100).",
    "bri-11": "Survived stages 1 + 2 on 4efd818 (207 s): a real gap. Every test fed the same "
              "c_skip to the network (F = (x_0 − c_skip x_t)/c_out) and to the denoiser, so a "
              "wrong c_skip cancelled, and the oracle bridge tests use the exact denoiser "
              "without preconditioning. Closed by `tests/test_bridge_samplers.py::"
              "test_bridge_preconditioning_is_the_official_get_bridge_scalings` (commit 86c1334: "
              "float64 transcription of DDBM's `get_bridge_scalings`, VE and VP); the row is its "
              "rerun on the 4efd818 snapshot with that test file (as committed) copied in.",
    "anc-8": "Survived stages 1 + 2 on 4efd818 (473 s): a real gap. Every test of a per-step η "
             "used a constant vector (jnp.full(10, 0.3)), for which η_{k+1} = η_k, and JAX clamps "
             "the out-of-range last index. Closed by `tests/test_oracle_samplers.py::"
             "test_ddim_with_one_eta_per_step_matches_its_law` (commit f848dee: η = (0, 1, 0, 1) "
             "at 4 steps against the float64 DDIM law; the mutant is 30 s.e. away); the row is "
             "its rerun on the 4efd818 snapshot with that test file (as committed) copied in.",
}

#: The test files copied into the final round's snapshot, as committed (``--extra`` form).
REPRO_EXTRA = ["f848dee:tests/test_oracle_samplers.py", "86c1334:tests/test_bridge_samplers.py"]

#: What happened before the round in the JSON (rendered under "Notes on the runs").
NOTES: list[str] = [
    "Round 0 (2026-12-04, commit 6b24e55, stage 1 only, `--no-stage2`): the 63 `ROUND1` "
    "mutants, 57 killed, 6 survived stage 1 (sdes-2, dpm-3, drv-5, ddrm-4, pigdm-1, pir-5); "
    "control: the 49 stage-1 ids passed on the unmutated snapshot in 184 s.",
    "Stage 2 for those six (2026-12-05, commit 6b9b5fa = 6b24e55's tests and library, "
    "`--only ... --rerun`, 266–555 s each): sdes-2 killed by `test_bridges.py::"
    "test_h_closed_form_equals_autodiff[goub]`, drv-5 by `test_transcriptions.py::"
    "test_dps_matches_transcription[tanh-ddim-s25-eta.5-zeta.5-clip]`, ddrm-4 by "
    "`test_oracle_inverse.py::test_own_law[ddrm-dense-sy.5-s5]`, pir-5 by `test_oracle_inverse.py"
    "::test_own_law[diffpir-blur-s10-fft]`; dpm-3 and pigdm-1 survived both stages (real gaps, "
    "closed by the tests named under Survivors). Round 0 therefore killed 61 of 63 (96.8 %).",
    "New stage-1 tests were then added (commit 4efd818, tests only; each checked to fail on its "
    "mutant and pass unmutated) and the round below was run from scratch on that commit. The "
    "mutated library files are identical in 6b24e55 and 6b9b5fa; between 6b9b5fa and 4efd818 "
    "other work (b11ad36, 25ff026) refactored sdes.py (the VP drift / diffusion moved into a "
    "base class shared by VPSDE and DiscreteVPSDE), inverse/_common.py, _smc.py, _pnpdm.py, "
    "_enkg.py and _fps.py: the 36 mutants there were moved to their new lines with the same "
    "tokens (`--check` on 4efd818: all 151 apply).",
    "Two mutants survived both stages on 4efd818 (bri-11, anc-8: real gaps). Their new tests "
    "were committed (86c1334, f848dee; tests only) and both were rerun on the *same* 4efd818 "
    "snapshot with the two test files copied in (`--extra tests/test_oracle_samplers.py "
    "tests/test_bridge_samplers.py`), so that every row runs against the library of 4efd818 "
    "(other work changed jaxir/ after it). The control ran on that snapshot too.",
]


# ---------------------------------------------------------------------------- machinery
def _git(*args, cwd=REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def _interleave(ms: list[dict]) -> list[dict]:
    """``ms`` reordered round-robin over their files (the order within a file kept)."""
    groups: dict[str, list[dict]] = {}
    for m in ms:
        groups.setdefault(m["file"], []).append(m)
    out, queues = [], [list(g) for g in groups.values()]
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def make_snapshot(commit: str, dest: Path, extra: list[str]) -> Path:
    """``git archive`` of ``commit`` into ``dest`` (created once), plus ``extra`` files copied
    from the working tree (e.g. a new test file not committed yet)."""
    if not (dest / "jaxir").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        arch = subprocess.run(["git", "archive", commit], cwd=REPO, check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    for rel in extra:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if ":" in rel:  # COMMIT:PATH — the file as committed there (reproducible)
            rev, path = rel.split(":", 1)
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_text(_git("show", f"{rev}:{path}") + "\n")
        else:
            shutil.copy2(REPO / rel, dest / rel)
    return dest


def mutate_text(text: str, m: dict) -> str:
    """The mutated source: the ``occurrence``-th ``orig`` on line ``line`` replaced by ``repl``."""
    lines = text.splitlines(keepends=True)
    i = m["line"] - 1
    if i >= len(lines):
        raise ValueError(f"{m['id']}: {m['file']} has no line {m['line']}")
    line = lines[i]
    pos = -1
    for _ in range(m["occurrence"]):
        pos = line.find(m["orig"], pos + 1)
        if pos < 0:
            raise ValueError(f"{m['id']}: {m['orig']!r} not found on {m['file']}:{m['line']}: "
                             f"{line.strip()!r}")
    lines[i] = line[:pos] + m["repl"] + line[pos + len(m["orig"]):]
    out = "".join(lines)
    if out == text:
        raise ValueError(f"{m['id']}: the mutant does not change the file")
    return out


_FAIL = re.compile(r"^(FAILED|ERROR) (\S+)")


def run_pytest(snap: Path, selection: list[str], timeout: float, python: str) -> dict:
    """One ``pytest -x`` run of ``selection`` in the snapshot; returns status and first failure."""
    env = dict(os.environ, PYTHONPATH=str(snap), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    cmd = ["nice", "-n", "10", python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x",
           *selection]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=snap, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")
        out = out.decode() if isinstance(out, bytes) else out
        return dict(status="timeout", seconds=round(time.time() - t0, 1), killer=None,
                    tail=out[-2000:])
    secs = round(time.time() - t0, 1)
    out = proc.stdout + proc.stderr
    killer = None
    for ln in out.splitlines():
        g = _FAIL.match(ln)
        if g:
            killer = g.group(2)
            break
    if proc.returncode == 0:
        status = "passed"
    elif proc.returncode == 5:
        status = "no-tests"
    elif proc.returncode in (1, 2):
        status = "failed"
        if killer is None:
            killer = "collection/import error" if proc.returncode == 2 else "(unparsed failure)"
    else:
        status = f"rc={proc.returncode}"
    return dict(status=status, seconds=secs, killer=killer, tail=out[-2000:])


def run_mutant(m: dict, snap: Path, timeout: float, python: str, stage2: bool) -> dict:
    path = snap / m["file"]
    original = path.read_text()
    res = dict(id=m["id"], file=m["file"], line=m["line"], orig=m["orig"], repl=m["repl"],
               what=m["what"], stages=[])
    try:
        path.write_text(mutate_text(original, m))
        try:
            py_compile.compile(str(path), doraise=True)
        except py_compile.PyCompileError as e:
            res.update(result="invalid", killer=f"does not compile: {e.msg[:200]}", seconds=0.0)
            return res
        stages = [("stage1", m["stage1"])]
        if stage2:
            stages.append(("stage2", MODULE_TESTS[m["file"]]))
        for name, sel in stages:
            r = run_pytest(snap, sel, timeout, python)
            res["stages"].append(dict(stage=name, selection=sel, status=r["status"],
                                      seconds=r["seconds"], killer=r["killer"]))
            if r["status"] != "passed":
                res["tail"] = r["tail"]
                break
        last = res["stages"][-1]
        res["seconds"] = round(sum(s["seconds"] for s in res["stages"]), 1)
        res["killer"] = last["killer"]
        res["result"] = {"passed": "survived", "failed": "killed", "timeout": "timeout"}.get(
            last["status"], "error")
        return res
    finally:
        path.write_text(original)
        pyc = path.parent / "__pycache__"
        if pyc.is_dir():  # a stale .pyc of the mutant must never be reused
            for f in pyc.glob(path.stem + ".*.pyc"):
                f.unlink()


def load_results() -> dict:
    if RESULTS_JSON.exists():
        return json.loads(RESULTS_JSON.read_text())
    return {"meta": {}, "results": {}}


def save_results(data: dict) -> None:
    tmp = RESULTS_JSON.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(RESULTS_JSON)


def save_one(meta_update: dict, result: dict) -> dict:
    """Merge one mutant's result into the JSON on disk (re-read first, so that two runs with
    different snapshots, e.g. a rerun with ``--extra`` next to the main run, do not overwrite
    each other's results)."""
    data = load_results()
    data["results"][result["id"]] = result
    meta = data["meta"]
    extra = set(meta.get("extra") or []) | set(meta_update.pop("extra", []))
    started = meta.get("started")
    meta.update(meta_update, extra=sorted(extra))
    if started:
        meta["started"] = min(started, meta_update.get("started", started))
    meta["finished"] = datetime.datetime.now().isoformat(timespec="minutes")
    save_results(data)
    return data


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def write_report(data: dict) -> None:
    meta, res = data["meta"], data["results"]
    rows = [res[m["id"]] for m in MUTANTS if m["id"] in res]
    not_run = [m["id"] for m in MUTANTS if m["id"] not in res]
    n = len(rows)
    commits = sorted({r.get("commit", "?") for r in rows})
    by_module: dict[str, list[int]] = {}
    for r in rows:
        k = r["file"].split("/")[1] if r["file"].count("/") > 1 else r["file"]
        k = {"samplers": "jaxir/samplers/", "inverse": "jaxir/inverse/"}.get(k, k)
        c = by_module.setdefault(k, [0, 0])
        c[0] += 1
        c[1] += r["result"] == "killed"
    wall = sum(r.get("seconds", 0) for r in rows)
    base = meta.get("baseline")
    control = ("- Control: not run." if not base else
               f"- Control: the {base['tests']} stage-1 selections ({base.get('scope', 'round1')}) "
               f"together on the unmutated snapshot "
               f"`{base['commit'][:10]}`: {base['status']} in {base['seconds']:.0f} s (`--baseline`)."
               if base["status"] == "passed" else
               f"- Control FAILED on `{base['commit'][:10]}`: {base['killer']}.")
    count = {k: sum(r["result"] == k for r in rows)
             for k in ("killed", "survived", "timeout", "invalid", "error")}
    equivalent = [r for r in rows if r["result"] == "survived"
                  and EXPLAIN.get(r["id"], "").startswith("Equivalent")]
    scored = n - len(equivalent) - count["invalid"]
    fixed = [r["id"] for r in rows if r["result"] == "killed" and r["id"] in EXPLAIN
             and "Closed by" in EXPLAIN[r["id"]]]
    rate = count["killed"] / scored if scored else float("nan")
    lines = [
        "# Mutation testing of jaxir's numerical core (issue 18 item 4)",
        "",
        "Generated by `experiments/tools/mutants.py` (the mutant table and the explanations of "
        "survivors live there). Each mutant is one token changed in a private copy of the "
        "repository; its targeted tests (stage 1) run first with `pytest -x`, and only if they "
        "all pass every test file of the module (stage 2) before it counts as a survivor.",
        "",
        f"- Snapshot: commit `{meta.get('commit', '?')}` ({meta.get('commit_date', '?')}), "
        f"a `git archive` of it in /tmp; every result was run on "
        f"{', '.join('`' + c[:10] + '`' for c in commits)}; extra working-tree files copied into "
        f"the snapshot for reruns: {', '.join(meta.get('extra') or []) or 'none'} (per mutant "
        f"in the JSON).",
        f"- Files in the snapshot that were mutated: "
        f"{', '.join(sorted({r['file'] for r in rows}))}.",
        f"- Run: {meta.get('started', '?')} – {meta.get('finished', '?')}, "
        f"per-stage wall limit {meta.get('timeout', '?')} s, niced on the shared 2-core machine "
        f"(8 engineers); pytest wall time summed over the mutants {wall / 60:.0f} min "
        f"({wall / max(n, 1):.0f} s per mutant, mostly JAX start-up and compilation).",
        f"- Reproduce (from the repository root, commit `{meta.get('commit', 'HEAD')[:10]}`): "
        f"`nice -n 10 .venv/bin/python experiments/tools/mutants.py --commit "
        f"{meta.get('commit', 'HEAD')[:10]} --all"
        f"{(' --extra ' + ' '.join(REPRO_EXTRA)) if REPRO_EXTRA else ''}` runs every mutant not "
        f"yet in the JSON (the `--extra` files: the committed versions of the test files copied "
        f"into this round's snapshot; add "
        f"`--rerun` to redo them; `--baseline --all` is the control; `--only <ids> --rerun` one "
        f"mutant); `--report` rewrites this file.",
        f"- Round: {n} of the {len(MUTANTS)} mutants defined in the script were run: the "
        f"{sum(r['id'] in ROUND1 for r in rows)} of `ROUND1` with its targeted (one or two "
        f"test ids) stage-1 selections, the others with the stage-1 selection of their `MUTANTS` record; stage 2 "
        f"(every test file of the module) ran for each stage-1 survivor. Not run: "
        f"{', '.join(not_run) or 'none'}.",
        "- Per module (killed / run): "
        + "; ".join(f"{k} {v[1]}/{v[0]}" for k, v in sorted(by_module.items())) + ".",
        control,
        "",
        f"**{n} mutants: {count['killed']} killed, {count['survived']} survived "
        f"({len(equivalent)} of them equivalent), {count['timeout']} timed out, "
        f"{count['invalid']} invalid, {count['error']} errors. Kill rate "
        f"{count['killed']}/{scored} = {100 * rate:.1f} % of the non-equivalent mutants"
        f" ({100 * count['killed'] / n if n else float('nan'):.1f} % of all).**"
        + (f" {len(fixed)} of the kills ({', '.join(fixed)}) are by tests added after the mutant "
           f"survived an earlier stage or round (see Survivors and Notes); without those tests "
           f"the rate would be {count['killed'] - len(fixed)}/{scored} = "
           f"{100 * (count['killed'] - len(fixed)) / scored:.1f} %." if fixed else ""),
        "",
        "| mutant | file:line | change | what it breaks | result | killed by | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        change = f"`{_cell(r['orig'])}` → `{_cell(r['repl'])}`"
        killer = r.get("killer") or "—"
        stage = r["stages"][-1]["stage"] if r.get("stages") else ""
        if r["result"] == "killed" and stage == "stage2":
            killer += " (stage 2)"
        result = r["result"]
        if result == "survived":
            result += " (stage 1 only)" if stage == "stage1" else " (stages 1 + 2)"
        if r.get("extra"):
            result += " [rerun with " + ", ".join(r["extra"]) + "]"
        lines.append(f"| {r['id']} | {r['file']}:{r['line']} | {change} | {_cell(r['what'])} | "
                     f"{result} | `{_cell(killer)}` | {r.get('seconds', 0):.0f} |")
    surv = [r for r in rows if r["result"] != "killed" or r["id"] in EXPLAIN]
    lines += ["", "## Survivors and other non-kills", ""]
    if not surv:
        lines.append("None.")
    for r in surv:
        lines.append(f"- **{r['id']}** ({r['file']}:{r['line']}, `{_cell(r['orig'])}` → "
                     f"`{_cell(r['repl'])}`, {r['result']}): "
                     f"{EXPLAIN.get(r['id'], 'NOT YET EXPLAINED')}")
    history = NOTES + (meta.get("history") or [])
    if history:
        lines += ["", "## Notes on the runs", ""] + [f"- {h}" for h in history]
    RESULTS_MD.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    global RESULTS_JSON
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commit", default=None, help="commit to snapshot (default: HEAD)")
    ap.add_argument("--snapshot", default=None, help="scratch directory (default /tmp/jaxir-mut-<hash>)")
    ap.add_argument("--extra", nargs="*", default=[],
                    help="files to copy into the snapshot (new tests): working-tree paths, "
                         "or COMMIT:PATH for a file as committed")
    ap.add_argument("--only", nargs="*", default=None, help="mutant ids to run")
    ap.add_argument("--rerun", action="store_true", help="run mutants that already have a result")
    ap.add_argument("--no-stage2", action="store_true", help="stop after the targeted tests")
    ap.add_argument("--timeout", type=float, default=1800.0, help="wall limit per stage (s)")
    ap.add_argument("--check", action="store_true", help="only check that every mutant applies")
    ap.add_argument("--report", action="store_true", help="only rewrite the markdown table")
    ap.add_argument("--list", action="store_true", help="list the mutants")
    ap.add_argument("--baseline", action="store_true",
                    help="run every stage-1 selection once on the unmutated snapshot (control)")
    ap.add_argument("--all", action="store_true",
                    help="run every mutant in MUTANTS (default: the ROUND1 selection)")
    ap.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"))
    ap.add_argument("--results", default=None,
                    help=f"results JSON (default {RESULTS_JSON.relative_to(REPO)}), e.g. to keep "
                         "a round apart while another run writes the default file")
    args = ap.parse_args(argv)
    if args.results:
        RESULTS_JSON = Path(args.results).resolve()

    ids = [m["id"] for m in MUTANTS]
    assert len(ids) == len(set(ids)), "duplicate mutant ids"
    assert set(ROUND1) <= set(ids), set(ROUND1) - set(ids)
    by_id = {m["id"]: m for m in MUTANTS}
    round1 = [dict(by_id[i], stage1=sel) for i, sel in ROUND1.items()]
    # --all: ROUND1 (with its selections) first, then the other mutants with their own stage-1
    # selections, modules interleaved so that a partial run already covers every module.
    everything = round1 + _interleave([m for m in MUTANTS if m["id"] not in ROUND1])
    for m in MUTANTS:
        assert m["file"] in MODULE_TESTS, m["file"]
    if args.list:
        for m in (everything if args.all else round1):
            print(f"{m['id']:10s} {m['file']}:{m['line']}  {m['orig']!r} -> {m['repl']!r}  {m['what']}")
        return 0
    data = load_results()
    if args.report:
        write_report(data)
        print(f"wrote {RESULTS_MD}")
        return 0

    commit = args.commit or _git("rev-parse", "HEAD")
    commit = _git("rev-parse", commit)
    snap = Path(args.snapshot or f"/tmp/jaxir-mut-{commit[:10]}")
    make_snapshot(commit, snap, args.extra)

    bad = 0
    for m in MUTANTS:
        try:
            mutate_text((snap / m["file"]).read_text(), m)
        except (ValueError, FileNotFoundError) as e:
            print("BAD", e)
            bad += 1
    if args.check or bad:
        print(f"{len(MUTANTS)} mutants, {bad} do not apply to {commit[:10]} ({snap})")
        return 1 if bad else 0

    if args.baseline:  # the control: every selection passes on the unmutated snapshot
        sel = sorted({t for m in (everything if args.all else round1) for t in m["stage1"]})
        r = run_pytest(snap, sel, args.timeout, args.python)
        print(r["tail"][-1500:])
        data = load_results()
        data["meta"]["baseline"] = dict(commit=commit, status=r["status"], seconds=r["seconds"],
                                        tests=len(sel), killer=r["killer"],
                                        scope="all" if args.all else "round1")
        save_results(data)
        return 0 if r["status"] == "passed" else 1

    meta_update = dict(commit=commit, commit_date=_git("show", "-s", "--format=%ci", commit),
                       extra=list(args.extra), timeout=args.timeout,
                       started=datetime.datetime.now().isoformat(timespec="minutes"))
    pool = everything if args.all else round1
    if args.only is not None:  # ROUND1's stage-1 selection where it has one
        pool = [next((r for r in round1 if r["id"] == i), by_id[i]) for i in args.only]
    todo = [m for m in pool if args.rerun or m["id"] not in data["results"]]
    for k, m in enumerate(todo, 1):
        print(f"[{k}/{len(todo)}] {m['id']}: {m['file']}:{m['line']} "
              f"{m['orig']!r} -> {m['repl']!r}", flush=True)
        r = run_mutant(m, snap, args.timeout, args.python, not args.no_stage2)
        r.update(commit=commit, extra=list(args.extra))
        print(f"    {r['result']} in {r.get('seconds', 0):.0f} s by {r.get('killer')}", flush=True)
        data = save_one(dict(meta_update), r)
    write_report(load_results())
    return 0


if __name__ == "__main__":
    sys.exit(main())
