"""Infra validation (pipeline step 12): serve the candidate for real before it is pushed.

component.py (InfraValidatorSpec, InfraValidator), executor.py (Executor, run_infra_validation),
config.py (the `infra_validation:` section), probe.py (signature checks), skew.py
(training/serving skew), warmup.py (eval samples and TF Serving warmup requests).
"""
