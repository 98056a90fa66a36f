"""fineimagen: Imagen-style text-to-image diffusion with fine-grained control.

Importing the package has no side effects and touches no network; heavy modules load on use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
