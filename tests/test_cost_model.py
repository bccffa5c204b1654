"""benchmarks/cost.py: XLA's counts and the roofline estimate (issue #15, item 6)."""
import jax
import jax.numpy as jnp
import pytest

from benchmarks import cost


def test_costs_reads_xla_counts_of_a_known_program():
    n = 256
    x = jax.ShapeDtypeStruct((n, n), jnp.float32)
    compiled = jax.jit(lambda a, b: jnp.tanh(a @ b)).lower(x, x).compile()
    c = cost.costs(compiled)
    # A matmul is 2 n^3 FLOPs (the tanh adds a few per element); reads 2 n^2, writes n^2 floats.
    assert c["gflop"] * 1e9 == pytest.approx(2 * n**3, rel=0.01)
    assert c["gbytes"] * 1e9 >= 3 * n * n * 4
    m = compiled.memory_analysis()
    assert c["peak_gib"] * 2**30 == m.argument_size_in_bytes + m.output_size_in_bytes \
        - m.alias_size_in_bytes + m.temp_size_in_bytes
    assert c["peak_gib"] * 2**30 >= 3 * n * n * 4


def test_roofline_is_the_slower_of_compute_and_memory():
    h100 = cost.DEVICES["H100 SXM"]
    # Compute-bound: 1e12 FLOPs, 1 byte.
    assert cost.roofline_ms(1e12, 1, "H100 SXM", "bfloat16") == pytest.approx(1e3 * 1e12 / 989.4e12)
    # Memory-bound: 1 FLOP, 3.35e9 bytes = 1 ms at 3.35 TB/s, whatever the dtype.
    for dtype in ("float32", "bfloat16"):
        assert cost.roofline_ms(1, 3.35e9, "H100 SXM", dtype) == pytest.approx(1.0)
    assert h100["float32"] == h100["bfloat16"] / 2
    assert cost.roofline_ms(197e12, 0, "TPU v5e", "bfloat16") == pytest.approx(1e3)
