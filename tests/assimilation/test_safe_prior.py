"""A particle whose prior evaluation raises (a compiled ``sigma > 0`` check after a scale
underflows to 0) is rejected alone; the rest of the batch is evaluated as usual."""

import numpy as np


class _Model:
    """log prior = -z^2/2 summed; raises for any row whose first coordinate is below -700
    (exp(z) underflows to 0, as PyMC's Check{sigma > 0} does); likelihood = 0."""

    def log_prior_z(self, z, grad):
        if np.any(z[:, 0] < -700):
            raise ValueError("sigma > 0")
        return -0.5 * np.sum(z**2, axis=1), (-z if grad else None)

    def log_likelihood_z(self, z, data, grad):
        return np.zeros(z.shape[0]), (np.zeros_like(z) if grad else None)


def test_raising_prior_rejects_only_the_bad_particle():
    from vvuq_twin.assimilation.targets import TemperedTarget

    z = np.array([[0.0, 1.0], [-800.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.5, -0.5]])
    ev = TemperedTarget(_Model(), [], {})(z, grad=True)
    assert ev.log_prior[1] == -np.inf
    good = [0, 2, 3, 4]
    np.testing.assert_allclose(ev.log_prior[good], -0.5 * np.sum(z[good] ** 2, axis=1))


def test_prior_that_raises_for_every_particle_rejects_all():
    from vvuq_twin.assimilation.targets import TemperedTarget

    z = np.full((3, 2), -900.0)
    ev = TemperedTarget(_Model(), [], {})(z, grad=False)
    assert np.all(ev.log_prior == -np.inf)
