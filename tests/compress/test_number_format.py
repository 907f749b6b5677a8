"""Number formats round as specified, checked against hand-computed values."""
import numpy as np
import pytest

from ssdq.compress.formats.number_format import NumberFormat, round_half_away
from ssdq.errors import SsdqError


def test_round_half_away_from_zero():
    np.testing.assert_array_equal(round_half_away([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, -2.51]),
                                  [1, 2, 3, -1, -2, 0, -3])


def test_dfp_weights_integer_length_rounding_and_saturation():
    # max|w| = 0.75: il = ceil(log2(0.75) + 1) = 1, 4 bits -> fl = 3, step 1/8, range [-1, 7/8]
    grid = NumberFormat("dfp:4").weights(np.array([0.75, -0.3]))
    assert grid.describe == {"il": 1, "fl": 3}
    out = grid.apply(np.array([0.75, 0.0625, -0.0625, 0.1, 0.99, -1.5, 0.0]))
    np.testing.assert_allclose(out, [0.75, 0.125, -0.125, 0.125, 0.875, -1.0, 0.0])


def test_dfp_activations_drop_one_integer_bit_like_ristretto():
    # max|x| = 5: il = ceil(log2 5) = 3, 8 bits -> fl = 5, largest value 127/32 = 3.96875
    grid = NumberFormat("dfp:8").activations(0.0, 5.0)
    assert grid.describe == {"il": 3, "fl": 5}
    np.testing.assert_allclose(grid.apply(np.array([5.0, 1 / 64, 3 / 64, -10.0])),
                               [127 / 32, 1 / 32, 2 / 32, -4.0])


def test_int8_follows_mxnets_half_step_ranges():
    # MXNet: uint8 scale 255.5 / t, int8 scale 127.5 / t, saturating at 255 / [-128, 127]
    unsigned = NumberFormat("int:8").activations(0.0, 2.555)   # scale 100
    np.testing.assert_allclose(unsigned.apply(np.array([0.005, 0.004, -1.0, 2.555, 3.0])),
                               [0.01, 0.0, 0.0, 2.55, 2.55], rtol=1e-6)
    signed = NumberFormat("int:8").activations(-1.275, 0.5)    # scale 100; -1.276 -> -127.6
    np.testing.assert_allclose(signed.apply(np.array([-0.005, -1.276, -2.0, 2.0])),
                               [-0.01, -1.28, -1.28, 1.27], rtol=1e-6)


def test_int8_weights_have_one_scale_per_output_channel():
    w = np.array([[1.0, -0.5], [0.01, 0.004]])
    grid = NumberFormat("int:8").weights(w)
    np.testing.assert_allclose(grid.scale, [127.5, 12750.0])
    # 1.0 -> 127.5 -> 128 saturates to 127; -0.5 -> -63.75 -> -64; 0.004 -> 51
    np.testing.assert_allclose(grid.apply(w), [[127 / 127.5, -64 / 127.5],
                                               [127 / 12750, 51 / 12750]], rtol=1e-6)


def test_pow2_rounds_in_log_domain_and_clamps_exponents():
    grid = NumberFormat("pow2:-3:1").weights(np.zeros(1))
    x = np.array([0.0, 0.3, -0.7, 3.0, 100.0, 1e-6, -1e-6, 2 ** -2.5, 2 ** 0.5])
    # log2 0.3 = -1.74 -> -2; log2 0.7 = -0.51 -> -1; log2 3 = 1.58 -> 2 -> clamped to 1;
    # tiny values clamp up to 2^-3; -2.5 and 0.5 round away from zero.
    np.testing.assert_allclose(grid.apply(x), [0, 0.25, -0.5, 2, 2, 0.125, -0.125, 0.125, 2])


def test_pow2clip_picks_the_smallest_power_of_two_clip():
    grid = NumberFormat("pow2clip:8").activations(-3.0, 2.5)   # t = 3 -> j = 2, scale 2^5
    assert grid.describe["j"] == 2
    np.testing.assert_allclose(grid.apply(np.array([1 / 64, 3 / 64, 10.0, -10.0])),
                               [1 / 32, 2 / 32, 127 / 32, -4.0])
    fixed = NumberFormat("pow2clip:8:0").weights(np.array([5.0]))   # fixed clip [-1, 1]
    np.testing.assert_allclose(fixed.apply(np.array([5.0, -5.0])), [127 / 128, -1.0])


def test_clip_only_keeps_fp32_values_inside():
    grid = NumberFormat("clip:-2").weights(np.zeros(1))
    np.testing.assert_allclose(grid.apply(np.array([0.1234, 0.3, -0.3])), [0.1234, 0.25, -0.25],
                               rtol=1e-6)


def test_activation_symbol_matches_numpy_rounding():
    import mxnet as mx

    x = np.random.default_rng(0).normal(0, 3, 1000).astype(np.float32)
    x[:6] = [0.5, -0.5, 1.5, -2.5, 0.0, 1 / 16]  # halves, zero
    for spec, rng in (("dfp:6", (-5.0, 7.0)), ("int:8", (0.0, 4.0)), ("pow2:-4:2", (-1, 1)),
                      ("pow2clip:4", (-2.0, 2.0))):
        grid = NumberFormat(spec).activations(*rng)
        sym = grid.symbol(mx.sym.var("x"))
        out = sym.eval(x=mx.nd.array(x))[0].asnumpy()
        np.testing.assert_allclose(out, grid.apply(x), rtol=1e-6, atol=1e-7, err_msg=spec)


@pytest.mark.parametrize("spec", ["dfp", "dfp:x", "pow2:5:1", "int:1", "bf:8", "pow2clip:8:1:2"])
def test_bad_specs_are_clean_errors(spec):
    with pytest.raises(SsdqError):
        NumberFormat(spec)
