"""Real data in, real files out: measurements, kernels and starts from files, the reconstruction at full precision,
strict JSON, folders of images solved in batches grouped by size, and one clear line for every bad file."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import ShrinkDenoiser, small_image
from hydra.errors import InstantiationException
from skimage import io, util
from test_cli import assert_user_error, refused_here, solve, solve_here

from pnp.config import composed, warm_start
from pnp.errors import ConfigError
from pnp.images import load_image
from pnp.io import read_data
from pnp.monitor import ConvergenceMonitor
from pnp.outputs import write_json
from pnp.problems import Measured, blur_kernel, cs, ct, deblur, file_kernel, tomography_angles
from pnp.schemes import PGD
from pnp.solve import solve as run_solve

RUN = ["monitor.progress=false", "device=cpu"]
#: the default prior (crr, accelerated gradient) reaches c_k < 1e-3 in about 60 iterations on these small images
CONVERGE = [*RUN, "monitor.tol=1e-3", "monitor.max_iter=300"]
FEW = [*RUN, "monitor.max_iter=6", "monitor.check_every=3", "plots=false"]


def strict_json(path: Path) -> dict:
    """metrics.json parsed by a strict parser: NaN or Infinity literals fail."""

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def blurred_png(folder: Path, name: str = "camera", size: int = 48, file: str = "blurred.png") -> Path:
    """A Gaussian-blurred image (σ = 1.6, noise 0.01) saved as an 8-bit PNG."""
    y = deblur(load_image(name, size=size), seed=0).y
    path = folder / file
    io.imsave(path, util.img_as_ubyte(y[0, 0].clamp(0, 1).numpy()), check_contrast=False)
    return path


def gaussian_psf(folder: Path, scale: float = 1.0, file: str = "psf.npy") -> Path:
    k = blur_kernel("gaussian", None, 1.6, 0, torch.device("cpu"), torch.float32)[0, 0].numpy() * scale
    np.save(folder / file, k)
    return folder / file


def sinogram(folder: Path, size: int = 32, angles: int = 20) -> tuple[Path, torch.Tensor]:
    x = load_image("phantom", size=size)
    np.save(folder / "sino.npy", ct(x, seed=0, angles=angles).y[0, 0].numpy())
    return folder / "sino.npy", x


def assert_one_error(proc, *fragments: str) -> None:
    """Exit status 2, exactly one ``error:`` line on stderr, no traceback, and the ``fragments`` in it."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("error: ") == 1, proc.stderr
    assert_user_error(proc, *fragments)


def test_a_blurred_png_and_a_psf_file_are_deconvolved_without_ground_truth(tmp_path):
    y, psf = blurred_png(tmp_path), gaussian_psf(tmp_path)
    run = tmp_path / "run"
    args = [f"measurement.path={y}", f"problem.kernel_path={psf}", "problem.noise_sigma=estimate"]
    proc = solve("+problem=deblur", *args, *CONVERGE, run_dir=run)
    assert proc.returncode == 0, proc.stderr
    m = strict_json(run / "metrics.json")
    assert m["converged"] and not m["diverged"]
    assert not {"psnr", "ssim", "psnr_init", "psnr_observation", "psnr_per_image"} & set(m)
    estimate, line = proc.stdout.strip().splitlines()[-2:]
    assert line.startswith("deblur(psf.npy) · ") and "PSNR" not in line and ", converged (c_k=" in line
    assert estimate.startswith("noise_sigma estimated from the measurement: ")
    assert m["noise_sigma_estimate"][0] == pytest.approx(0.01, rel=0.3)  # the simulated σ, seen through 8 bits
    x = np.load(run / "reconstruction.npy")
    assert x.dtype == np.float32 and x.shape == (48, 48)
    tif = tifffile.imread(run / "reconstruction.tif")
    assert tif.dtype == np.float32 and np.array_equal(tif, x)
    png = io.imread(run / "reconstruction_8bit.png")
    assert png.dtype == np.uint8 and png.shape == (48, 48)
    assert np.abs(png / 255.0 - x.clip(0, 1)).max() <= 0.5 / 255 + 1e-6
    init = np.load(run / "init.npy")
    assert init.shape == (48, 48) and np.allclose(init, io.imread(y) / 255.0, atol=1e-6)  # init=observation
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == m["iterations"] and all(r["psnr"] == "" for r in rows)
    for figure in ("reconstruction.png", "convergence.png"):
        assert (run / figure).stat().st_size > 0


def test_a_sinogram_file_gives_a_reconstruction_scored_against_a_given_ground_truth(tmp_path):
    sino, x = sinogram(tmp_path)
    truth = tmp_path / "truth.png"
    io.imsave(truth, util.img_as_ubyte(x[0, 0].numpy()), check_contrast=False)
    run = tmp_path / "run"
    args = [f"measurement.path={sino}", "image.size=32", "problem.angles=20", f"image.path={truth}"]
    solve_here("+problem=ct", *args, *FEW, run_dir=run)
    m = strict_json(run / "metrics.json")
    assert np.load(run / "reconstruction.npy").shape == (32, 32)
    assert m["psnr"] > m["psnr_init"] and m["psnr_observation"] is None  # from the FBP, better after 6 iterations


def test_init_path_warm_starts_from_a_saved_reconstruction(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    solve_here("+problem=deblur", "image.size=32", *FEW, run_dir=first)
    solve_here("+problem=deblur", "image.size=32", f"init.path={first / 'reconstruction.npy'}", *FEW, run_dir=second)
    assert np.array_equal(np.load(second / "init.npy"), np.load(first / "reconstruction.npy"))
    a, b = strict_json(first / "metrics.json"), strict_json(second / "metrics.json")
    assert b["psnr_init"] == pytest.approx(a["psnr"], abs=1e-4)


def test_image_folder_solves_every_image_in_batches_grouped_by_size(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, source, size in (("a", "camera", 32), ("b", "moon", 40), ("c", "coins", 32)):
        io.imsave(folder / f"{name}.png", util.img_as_ubyte(load_image(source, size=size)[0, 0].numpy()))
    run = tmp_path / "run"
    _, line = solve_here(
        "+problem=deblur", f"image.folder={folder}", "image.size=null", "batch_size=2", *FEW, run_dir=run
    )
    m = strict_json(run / "metrics.json")
    rows = m["images"]
    assert [(r["name"], r["size"]) for r in rows] == [("a", "32x32"), ("b", "40x40"), ("c", "32x32")]
    assert m["count"] == 3 and m["batches"] == 2 and rows[0]["batch"] == rows[2]["batch"] != rows[1]["batch"]
    assert all(np.isfinite(r["psnr"]) and r["iterations"] == 6 for r in rows)
    for r in rows:
        side = int(r["size"].split("x")[0])
        assert np.load(run / r["name"] / "reconstruction.npy").shape == (side, side)
        assert strict_json(run / r["name"] / "metrics.json")["psnr"] == pytest.approx(r["psnr"])
    with (run / "summary.csv").open() as f:
        assert [row["name"] for row in csv.DictReader(f)] == ["a", "b", "c"]
    assert "3 images in 2 batch(es)" in line


def test_measurement_folder_reconstructs_every_measurement(tmp_path):
    folder = tmp_path / "measured"
    folder.mkdir()
    blurred_png(folder, "camera", 48, "one.png")
    blurred_png(folder, "moon", 32, "two.png")
    run = tmp_path / "run"
    solve_here("+problem=deblur", f"measurement.folder={folder}", *FEW, run_dir=run)
    rows = strict_json(run / "metrics.json")["images"]
    assert [(r["name"], r["size"]) for r in rows] == [("one", "48x48"), ("two", "32x32")]
    assert all("psnr" not in r for r in rows)
    assert np.load(run / "two" / "reconstruction.npy").shape == (32, 32)


def test_a_diverged_run_writes_strict_json(tmp_path):
    args = ("+problem=deblur", "scheme.stepsize=100", "denoiser=dncnn", "image.size=32", "monitor.max_iter=20")
    solve_here(*args, run_dir=tmp_path)  # its exit status 3: tests/test_cli.py
    m = strict_json(tmp_path / "metrics.json")
    assert m["diverged"] and np.load(tmp_path / "reconstruction.npy").shape == (32, 32)


def test_non_finite_numbers_become_null_and_are_listed(tmp_path):
    write_json(tmp_path / "m.json", {"psnr": float("nan"), "per": [1.0, float("inf")], "ok": 2.0})
    m = strict_json(tmp_path / "m.json")
    assert m["psnr"] is None and m["per"] == [1.0, None] and m["non_finite"] == ["per", "psnr"]


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".png", ".tif"])
def test_kernels_from_every_file_type_are_normalised_with_a_warning(suffix, tmp_path, caplog):
    k = np.outer(np.hanning(9), np.hanning(9))[1:-1, 1:-1]  # 7×7, non-negative, sum far from 1
    path = tmp_path / f"k{suffix}"
    if suffix == ".npy":
        np.save(path, k)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(k)[None, None], path)  # deepinv's [1, 1, h, w] layout
    elif suffix == ".tif":
        tifffile.imwrite(path, k.astype(np.float32))
    else:
        io.imsave(path, util.img_as_ubyte(k / k.max()), check_contrast=False)
    with caplog.at_level(logging.WARNING, logger="pnp"):
        filt = file_kernel(str(path), torch.device("cpu"), torch.float64)
    assert filt.shape == (1, 1, 7, 7) and float(filt.sum()) == pytest.approx(1.0)
    assert filt.min() >= 0 and np.allclose(filt[0, 0].numpy() * k.sum(), k, atol=5e-3 * k.max())
    assert "normalised to sum to 1" in caplog.text and "to avoid this warning" in caplog.text


def test_a_normalised_kernel_gives_no_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pnp"):
        file_kernel(str(gaussian_psf(tmp_path)), torch.device("cpu"), torch.float32)
    assert caplog.text == ""


def test_measured_problems_rebuild_the_simulating_operator(tmp_path):
    x = small_image(32)
    for build, kwargs in (
        (cs, {"ratio": 0.5}),
        (ct, {"angles": 12}),
        (deblur, {"padding": "valid", "init": "adjoint"}),
    ):
        simulated = build(x, seed=3, **kwargs)
        measured = build(measured=Measured(simulated.y, (1, 32, 32)), seed=3, **kwargs)
        assert measured.x_true is None and measured.x0.shape == x.shape
        assert torch.allclose(measured.physics.A(x), simulated.physics.A(x), atol=1e-6)


def test_angles_from_a_file_or_a_list_are_the_evenly_spread_ones(tmp_path):
    degrees = np.linspace(0, 180, 13)[:-1]
    np.savetxt(tmp_path / "angles.txt", degrees)
    (tmp_path / "angles.csv").write_text(",".join(map(str, degrees)))
    assert tomography_angles(str(tmp_path / "angles.txt")) == pytest.approx(degrees.tolist())
    assert tomography_angles(str(tmp_path / "angles.csv")) == pytest.approx(degrees.tolist())
    x = small_image(32)
    listed = ct(x, seed=0, angles=str(tmp_path / "angles.txt"))
    assert torch.allclose(listed.y, ct(x, seed=0, angles=12).y, atol=1e-5)


def test_file_readers_keep_float_values_and_scale_integer_images(tmp_path):
    values = np.linspace(-2.0, 5.0, 12, dtype=np.float32).reshape(3, 4)
    tifffile.imwrite(tmp_path / "f.tif", values)
    assert np.allclose(read_data(tmp_path / "f.tif", "measurement"), values)  # float TIFF: as stored
    tifffile.imwrite(tmp_path / "u.tif", np.full((3, 4), 65535, dtype=np.uint16))
    assert np.allclose(read_data(tmp_path / "u.tif", "measurement"), 1.0)  # 16-bit: scaled to [0, 1]
    with pytest.raises(ConfigError, match="holds a dict"):
        torch.save({"a": 1}, tmp_path / "d.pt")
        read_data(tmp_path / "d.pt", "measurement")


def test_a_warm_start_from_an_8bit_png_must_have_the_image_shape(tmp_path):
    problem = deblur(small_image(32), seed=0)
    io.imsave(tmp_path / "x.png", np.zeros((32, 32), dtype=np.uint8), check_contrast=False)
    assert float(warm_start(problem, str(tmp_path / "x.png")).x0.abs().max()) == 0
    with pytest.raises(ConfigError, match="the image is 1×32×32"):
        warm_start(problem, str(gaussian_psf(tmp_path)))


def test_a_batch_element_is_its_run_alone():
    x = small_image(32, batch=2)
    problem = deblur(x, seed=0)
    mon = dict(max_iter=200, tol=1e-4, check_every=5, progress=False)
    both = PGD().run(
        problem.y, problem.physics, ShrinkDenoiser(0.05), problem.x0, sigma=0.0, monitor=ConvergenceMonitor(**mon)
    )
    for b in range(2):
        one = problem.element(b)
        alone = PGD().run(
            one.y, one.physics, ShrinkDenoiser(0.05), one.x0, sigma=0.0, monitor=ConvergenceMonitor(**mon)
        )
        part = both.element(b)
        assert part.history.outcome == alone.history.outcome == ["converged"]
        assert part.history.iterations == alone.history.iterations == part.history.returned[0]
        torch.testing.assert_close(part.history.rel_residual, alone.history.rel_residual, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(part.x, alone.x, rtol=1e-5, atol=1e-6)


def test_the_new_keys_compose():
    cfg = composed("+problem=ct", "measurement.path=s.npy", "init.path=x.npy", "problem.angles=a.txt", "batch_size=4")
    assert cfg.measurement.path == "s.npy" and cfg.init.path == "x.npy" and cfg.batch_size == 4
    assert composed("+problem=deblur", "problem.kernel_path=k.png").problem.kernel_path == "k.png"


def bad_files(folder: Path) -> dict[str, Path]:
    """One broken input of each kind, written into ``folder``."""
    files = {"blurred": blurred_png(folder, size=32), "psf": gaussian_psf(folder)}
    np.save(folder / "big.npy", np.full((41, 41), 1 / 41**2))
    negative = np.load(files["psf"])
    negative[0, 0] = -0.1
    np.save(folder / "negative.npy", negative)
    np.save(folder / "cube.npy", np.full((3, 5, 5), 1 / 75))
    np.save(folder / "nan.npy", np.array([[0.5, np.nan], [0.1, 0.2]]))
    (folder / "broken.npy").write_text("not an array")
    files["sino"], _ = sinogram(folder)
    np.save(folder / "cs.npy", np.zeros(100))
    return files | {p.stem: p for p in folder.glob("*.npy")}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["+problem=deblur", "measurement.path={blurred}", "problem.kernel_path={big}"],
            ["must be larger than the 41×41"],
        ),
        (["+problem=deblur", "measurement.path={blurred}", "problem.kernel_path={negative}"], ["negative entries"]),
        (["+problem=deblur", "measurement.path={blurred}", "problem.kernel_path={cube}"], ["must be a 2-D array"]),
        (
            ["+problem=ct", "measurement.path={sino}", "image.size=32", "problem.angles=30"],
            ["does not match 30 angles"],
        ),
        (["+problem=cs", "measurement.path={cs}", "image.size=32"], ["shape (100,) does not match", "(256,)"]),
        (["+problem=deblur", "measurement.path={folder}/missing.png"], ["measurement file not found"]),
        (["+problem=deblur", "measurement.path={broken}"], ["cannot read measurement"]),
        (["+problem=deblur", "measurement.path={nan}"], ["non-finite values"]),
        (["+problem=deblur", "image.size=32", "init.path={psf}"], ["init", "the image is 1×32×32"]),
        (["+problem=deblur", "problem.noise_sigma=estimate"], ["noise_sigma=estimate", "measurement.path"]),
    ],
)
def test_bad_files_are_one_clear_line(args, fragments, tmp_path):
    """What the command line ends with, in this process (each command line costs seconds of imports; the test
    below runs one case as a command line)."""
    files = {k: str(v) for k, v in bad_files(tmp_path).items()}
    refused_here([*(a.format(folder=tmp_path, **files) for a in args), *FEW], tmp_path / "run", *fragments)


def test_a_bad_file_is_one_clear_line_at_the_command_line(tmp_path):
    files = bad_files(tmp_path)
    proc = solve(
        "+problem=deblur",
        f"measurement.path={files['blurred']}",
        f"problem.kernel_path={files['negative']}",
        *FEW,
        run_dir=tmp_path / "run",
    )
    assert_one_error(proc, "negative entries")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["+problem=ct", "measurement.path={sino}", "problem.angles=20"], "does not match .*image.size=128"),
        (["+problem=deblur", "problem.kernel_path={folder}/missing.npy"], "kernel file not found"),
        (["+problem=cs", "measurement.path={cs}", "problem.noise_sigma=estimate"], "give a number for CS"),
        (["+problem=deblur", "image.folder={folder}", "measurement.folder={folder}"], "not both"),
        (["+problem=deblur", "image.folder={folder}", "image.path={blurred}"], "image.path is for one image"),
        (["+problem=deblur", "image.folder={folder}/missing"], "is not a folder"),
        (["+problem=deblur", "measurement.folder={folder}/empty"], "has no files of type"),
        (["+problem=deblur", "image.folder={folder}", "batch_size=0"], "batch_size must be a positive integer"),
    ],
)
def test_bad_values_raise_the_error_the_command_line_reports(args, match, tmp_path):
    """The same checks as above, in this process (each command line costs seconds)."""
    files = {k: str(v) for k, v in bad_files(tmp_path).items()}
    (tmp_path / "empty").mkdir()
    cfg = composed(*(a.format(folder=tmp_path, **files) for a in args), *FEW)
    with pytest.raises((ConfigError, InstantiationException), match=match):  # user_errors unwraps the latter
        run_solve(cfg, tmp_path / "run")
