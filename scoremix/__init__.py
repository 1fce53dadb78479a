"""scoremix: one-step generators trained with Score-of-Mixture Training (SMT).

Jayashankar, Ryu, Wornell, ICML 2025 (arXiv 2502.09609). Equation numbers in comments are the paper's.

The public API: `load_sampler(path)` and `generate(path, n)` (scoremix.api), `load_teacher(spec)`
(scoremix.teachers). Importing the package imports neither torch nor numpy; the functions do on first use.
"""

__version__ = "0.1.0"

from .api import generate, load_sampler  # noqa: E402
from .teachers import load_teacher  # noqa: E402  (scoremix.load_teacher: a frozen denoiser D(x, sigma, labels))

__all__ = ["generate", "load_sampler", "load_teacher", "__version__"]
