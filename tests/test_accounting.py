"""Compression accounting and the schedules, checked on the paper's published numbers."""

import csv

import pytest

from dnnstress.authors import SHIPPED_DIR as AUTHORS
from dnnstress.stress import (MantissaErasure, RandomDrop, UniformQuantizer, bits_for_levels,
                              compression_rate, dr_schedule, fc_schedule, make_fc)

# The Dimensions column of the authors' "(DR-1) VGG-M [VOC 2007].csv", written out: the
# schedule against the paper's own numbers, independently of the shipped tables.
VGG_M_DR_COUNTS = [204, 409, 614, 819, 1024, 1228, 1433, 1638, 1843, 2047, 2252, 2457,
                   2662, 2867, 3072, 3276, 3481, 3686, 3891, 4096]


def test_dr_schedule_equals_authors_counts():
    assert dr_schedule(4096) == VGG_M_DR_COUNTS


@pytest.mark.parametrize("table, n", [("(DR-1) GoogLeNet [VOC 2007].csv", 50176),
                                      ("(DR-1) BossaNova [VOC 2007].csv", 63440),
                                      ("(DR-2) VGG-M [VOC 2007].csv", 4096)])
def test_dr_schedule_equals_authors_tables(table, n):
    with open(AUTHORS / table) as handle:
        published = [int(row["Dimensions"]) for row in csv.DictReader(handle)]
    assert dr_schedule(n) == published


def test_fc_schedule_equals_authors_grid():
    assert fc_schedule(4096) == [409, 819, 1228, 1638, 2048, 2457, 2867, 3276, 3686]
    with open(AUTHORS / "(FC) VGG-M [VOC 2007].csv") as handle:
        published = sorted({int(row["Dimensions"]) for row in csv.DictReader(handle)})
    assert published == fc_schedule(4096)


@pytest.mark.parametrize("h, bits", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4),
                                     (27, 5), (32, 5), (33, 6), (65536, 16)])
def test_bits_for_levels(h, bits):
    assert bits_for_levels(h) == bits


def test_paper_compression_examples():
    # FC headline: 409 of 4096 dims at h = 27 -> 2045 bits of 131072 -> 98.44 %.
    assert round(100 * compression_rate(4096, 409 * bits_for_levels(27)), 2) == 98.44
    # Fig. 5's other marks: 409 dims x 3 bits (99.06 %) and 819 dims x 5 bits (96.88 %).
    assert round(100 * compression_rate(4096, 409 * 3), 2) == 99.06
    assert round(100 * compression_rate(4096, 819 * 5), 2) == 96.88
    # Q-2 with 4 values: 2 bits instead of 32.
    assert compression_rate(4096, 4096 * bits_for_levels(4)) == 1 - 2 / 32


def test_fitted_stressors_report_their_bits():
    import numpy as np
    X = np.random.default_rng(0).random((50, 4096)).astype(np.float32)
    fc = make_fc(409, 27).fit(np.random.default_rng(1).random((600, 500)))
    assert fc.bits_per_vector == 409 * 5
    assert UniformQuantizer(4).fit(X).bits_per_vector == 4096 * 2
    assert RandomDrop(204, random_state=0).fit(X).bits_per_vector == 204 * 32
    assert MantissaErasure(50).fit(X).bits_per_vector == (1 + 8 + 2) * 4096  # of float32


@pytest.mark.parametrize("call", [lambda: bits_for_levels(0), lambda: compression_rate(0, 1),
                                  lambda: compression_rate(4, -1), lambda: dr_schedule(0)])
def test_accounting_rejects_nonsense(call):
    with pytest.raises(ValueError):
        call()


def test_qb_rows_and_the_stressor_account_alike():
    # Table 3, the headline and the Q-B figure read a row's bits from bits_per_vector;
    # the sweep stores the stressor's own: both must be the float32 bits kept.
    import numpy as np

    from dnnstress.stress.accounting import bits_per_vector

    X = np.ones((2, 7), dtype=np.float32)
    for erased in range(65):
        assert bits_per_vector(7, erased_bits=erased) == \
            MantissaErasure(erased).fit(X).bits_per_vector, erased
