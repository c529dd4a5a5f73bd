"""Denoisers with a closed form: exact posterior means ``E[x0 | x_t]`` for known data distributions.

They make exact checks of solvers possible without trained weights (Gaussian and Gaussian-mixture
data, and the empirical distribution of a real dataset such as Fashion-MNIST).
"""

from decoding.denoisers.empirical import EmpiricalData, fashion_mnist_data
from decoding.denoisers.gaussian import GaussianData
from decoding.denoisers.mixture import GaussianMixtureData
from decoding.denoisers.model import ClosedFormModel

__all__ = ["ClosedFormModel", "EmpiricalData", "GaussianData", "GaussianMixtureData", "fashion_mnist_data"]
