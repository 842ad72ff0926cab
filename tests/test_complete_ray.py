"""The robustness sweep on Ray equals the local sweep row for row, also after a killed worker and a
killed driver (resumed from the store).

Slow by nature: starting and stopping a local Ray instance takes about 8 s of the test budget."""

from __future__ import annotations


import pytest

ray = pytest.importorskip("ray", reason="Ray (the optional extra polylens[ray]) is not installed")


def test_ray_sweep_equals_local_sweep(tmp_path, monkeypatch):
    """Chunks as Ray tasks on a local Ray instance started and stopped here: the rows equal the local
    process pool's; with one worker killed mid-sweep (Ray retries its task) they still do; and a driver
    stopped after its first chunk resumes from the store to the same rows."""
    from polylens.data.labelled import Data
    from polylens.lenses.verify.certify import CertifyOptions
    from polylens.lenses.verify.sweep import RAY_DIE_ONCE, run_sweep
    from polylens.nn.model import load_model

    m = load_model("seed")
    d = Data.of_model(m).head(24)
    opts = CertifyOptions(attack_steps=10)
    eps = (0.0, 0.02)
    local = run_sweep(m.network, d.x, d.y, eps, options=opts, workers=1, chunk=8, with_lp_classifier=False)
    monkeypatch.setenv(RAY_DIE_ONCE, str(tmp_path / "died"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = run_sweep(m.network, d.x, d.y, eps, options=opts, chunk=8, with_lp_classifier=False,
                           executor="ray", out_dir=tmp_path / "a")
        assert (tmp_path / "died").exists(), "the hook killed one worker"
        assert [r.to_dict() for r in remote.rows] == [r.to_dict() for r in local.rows]

        class Stop(Exception):
            pass

        def stop_after_first(done, total):
            if 0 < done < total:
                raise Stop

        with pytest.raises(Stop):
            run_sweep(m.network, d.x, d.y, eps, options=opts, chunk=8, with_lp_classifier=False, executor="ray",
                      out_dir=tmp_path / "b", progress=stop_after_first)
        resumed = run_sweep(m.network, d.x, d.y, eps, options=opts, chunk=8, with_lp_classifier=False,
                            executor="ray", out_dir=tmp_path / "b")
        assert [r.to_dict() for r in resumed.rows] == [r.to_dict() for r in local.rows]
    finally:
        ray.shutdown()
