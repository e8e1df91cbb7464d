"""Every stressor method that needs a fit raises sklearn's NotFittedError before one."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from dnnstress.stress import (Identity, MantissaErasure, PCADrop, RandomDrop, UniformQuantizer,
                              make_fc)

X = np.random.default_rng(0).random((12, 6)).astype(np.float32)
CODES = np.zeros((2, 6), dtype=np.uint8)

STRESSORS = {
    "identity": Identity, "dr1": lambda: RandomDrop(3, random_state=0),
    "dr2": lambda: PCADrop(3), "q1": lambda: UniformQuantizer(4),
    "q2": lambda: UniformQuantizer(4, per_dimension=True), "qb": lambda: MantissaErasure(5),
    "fc": lambda: make_fc(3, 4),
}
# Every method (or property) each stressor has that needs its fit, with its arguments.
CALLS = {
    "transform": lambda s: s.transform(X),
    "encode": lambda s: s.encode(X),
    "decode": lambda s: s.decode(CODES),
    "pack": lambda s: s.pack(X),
    "unpack": lambda s: s.unpack(np.zeros((2, 2), dtype=np.uint8)),  # 6 values of 2 bits
    "bits_per_vector": lambda s: s.bits_per_vector,
    "n_features_out_": lambda s: s.n_features_out_,
}
CASES = [(name, method) for name, make in STRESSORS.items() for method in CALLS
         if hasattr(type(make()), method) or method == "n_features_out_"]


@pytest.mark.parametrize("name, method", CASES)
def test_use_before_fit_raises_not_fitted_error(name, method):
    stressor = STRESSORS[name]()
    with pytest.raises(NotFittedError, match="not fitted"):
        CALLS[method](stressor)
    stressor.fit(X)
    CALLS[method](stressor)  # the same call works once fitted


def test_every_stressor_and_quantizer_method_is_covered():
    methods = {method for _, method in CASES}
    assert methods == set(CALLS)
    assert {name for name, _ in CASES} == set(STRESSORS)


def test_unfitted_stressor_still_answers_hasattr_and_names_unknown_attributes():
    quantizer = UniformQuantizer(4)
    assert not hasattr(quantizer, "n_features_in_")
    assert not hasattr(quantizer, "bits_per_vector")
    with pytest.raises(AttributeError, match="no attribute 'colour'") as error:
        quantizer.colour
    assert not isinstance(error.value, NotFittedError)
    assert quantizer.fit(X).bits_per_vector == 2 * 6
