"""scoremix: one-step generators trained with Score-of-Mixture Training (SMT).

Jayashankar, Ryu, Wornell, ICML 2025 (arXiv 2502.09609). Equation numbers in comments are the paper's.
"""

__version__ = "0.1.0"

from .teachers import load_teacher  # noqa: E402  (scoremix.load_teacher: a frozen denoiser D(x, sigma, labels))

__all__ = ["load_teacher", "__version__"]
