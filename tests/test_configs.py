"""Every option of every config group composes and instantiates (after lightning-hydra-template)."""

from __future__ import annotations

import inspect
import re

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from reddiff_bench.errors import ConfigError
from reddiff_bench.run.pipeline import instantiate_group
from reddiff_bench.study.sweeps import expand_sweep

from .conftest import CONF, SMALL_GMM, write_listed_images
from .helpers import compose_config

GROUPS = ["solver", "task", "dataset", "model", "weighting", "optimizer", "logger"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i, size in enumerate([(300, 260), (256, 256), (280, 400)]):
        (root / f"class{i}").mkdir()
        Image.new("RGB", size, (40 * i, 90, 200)).save(root / f"class{i}" / f"img{i}.png")
    return root


def test_every_group_of_the_root_config_is_covered_by_the_compose_test():
    """A group added to conf/config.yaml's defaults without a place in GROUPS would escape the
    compose-and-instantiate test below."""
    defaults = OmegaConf.load(CONF / "config.yaml").defaults
    groups = {next(iter(d)) for d in defaults if isinstance(d, dict) or OmegaConf.is_dict(d)}
    assert groups - {"paths", "hydra"} <= set(GROUPS), groups - set(GROUPS)
    assert all(list((CONF / g).glob("*.yaml")) for g in GROUPS)


LISTED = {("dataset", "imagenet_val"), ("dataset", "ffhq")}  # they write their list's 1000 images: slow
# random-weight latent architectures (860M and 330M parameters to initialise): slow, and run in full
# by tests/test_latent.py's slow test
HEAVY = {("model", "sd_random"), ("model", "ldm_random")}
FITTED = {"gmm_photos", "gmm_latent", "gmm_latent_pixel"}  # they fit the photo mixture: a small fit here


@pytest.mark.parametrize("group,option", [pytest.param(g, o, marks=pytest.mark.slow) if (g, o) in LISTED | HEAVY
                                          else (g, o) for g, o in OPTIONS], ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group, option, image_root, tmp_path):
    overrides = [f"{group}={option}"] + (SMALL_GMM if group != "model" or option in FITTED else [])
    if group == "dataset":
        overrides.append(f"paths.data_dir={image_root}")
        dataset = compose_config(overrides).dataset
        if "root" in dataset.keys():  # noqa: SIM118 - a ??? value is not "in" a DictConfig
            overrides.append(f"dataset.root={image_root}")
        if dataset.get("file_list"):  # a published subset: its images, and only those, must be there
            write_listed_images(tmp_path / "listed", dataset.file_list)
            overrides[-1] = f"dataset.root={tmp_path / 'listed'}"
    if group == "model":
        overrides.append(f"paths.checkpoint_dir={tmp_path}")
        if option == "adm_random":  # the smaller FFHQ architecture: the same code, a tenth of the memory
            overrides += ["model.checkpoint_name=adm_ffhq256", "model.image_size=32"]
    if group == "task" and "path" in compose_config(overrides)[group].degradation.keys():  # noqa: SIM118 - a ??? value is not "in" a DictConfig
        mask = tmp_path / "mask.png"  # tasks that read user files get one
        Image.fromarray((torch.rand(16, 16) > 0.5).numpy().astype("uint8") * 255).save(mask)
        overrides.append(f"task.degradation.path={mask}")
    cfg = compose_config(overrides)
    node = cfg[group]
    assert "_target_" in node, f"{group}/{option} has no _target_"
    downloads = {"download", "local_files_only"} & set(node.keys()) if group == "model" else set()
    if downloads:
        # Real checkpoints are absent here: they must be refused with a clear message, not a traceback.
        overrides += ["model.download=false"] if "download" in downloads else ["model.local_files_only=true"]
        with pytest.raises(ConfigError):
            instantiate_group(compose_config(overrides)[group], group)
        return
    obj = instantiate(node, _convert_="all")
    if group == "optimizer":
        param = torch.zeros(3, requires_grad=True)
        assert isinstance(obj([param]), torch.optim.Optimizer)
    elif group == "weighting":
        w = obj(torch.tensor([0.99, 0.1]), torch.tensor([0.14, 0.995]))
        assert w.shape == (2,) and torch.all(w > 0)
    elif group == "dataset":
        image_id, x = obj[0]
        assert isinstance(image_id, str) and torch.isfinite(x).all()
        if x.ndim == 3:  # images; the Gaussian-mixture problems are vectors
            assert x.shape[0] == 3 and x.min() >= -1 and x.max() <= 1
    elif group == "solver":  # the solver contract: solve(prior, operator, y, *, sigma_y, generators, callback)
        params = inspect.signature(obj.solve).parameters
        assert list(params)[:3] == ["prior", "operator", "y"]
        assert {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} >= {"sigma_y", "generators", "callback"}
    elif group == "task":
        assert obj.sigma_y >= 0


def covering(jobs: list[list[str]]) -> list[list[str]]:
    """Jobs of a sweep that together hold every value of every swept key (the full grid of a
    preset has hundreds of jobs; each value failing alone is what this test is for)."""
    seen: set[str] = set()
    out = []
    for job in jobs:
        if set(job) - seen:
            out.append(job)
            seen |= set(job)
    return out


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_job_of_an_experiment_composes_and_builds_its_task_and_solver(experiment):
    """Jobs of the preset's sweep (expanded as Hydra's sweeper would) that cover every swept value
    compose, name their output folder after the preset, and build their task and solver."""
    jobs = expand_sweep([f"+experiment={experiment}"])
    assert jobs
    for job in covering(jobs):
        cfg = compose_config(job)
        assert cfg.experiment_name == experiment  # outputs/<experiment>/...: presets never share a folder
        instantiate(cfg.task, _convert_="all")
        instantiate(cfg.solver, _convert_="all")


PAPER_PRESETS = ["imagenet_inpaint", "imagenet_sr4", "ffhq_inpaint", "ffhq_sr4"]


def solver_settings(overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    cfg = compose_config(overrides)
    settings = OmegaConf.to_container(cfg.solver, resolve=True)
    if "optimizer" in settings:
        settings["lr"] = settings.pop("optimizer")["lr"]
        settings.pop("weighting")
    return settings


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_presets_are_sweeps_over_the_four_solvers_at_their_published_settings(preset):
    from hydra.types import RunMode

    cfg = compose_config([f"+experiment={preset}"])
    assert cfg.hydra.mode == RunMode.MULTIRUN  # a sweep from `python -m reddiff_bench +experiment=...`
    assert [job[0] for job in expand_sweep([f"+experiment={preset}"])] == [
        "solver=reddiff", "solver=dps", "solver=pgdm", "solver=ddrm"]
    assert cfg.task.noise.sigma_y == 0.0
    inpaint = "inpaint" in preset
    run = lambda solver: solver_settings([f"+experiment={preset}", f"solver={solver}"])  # noqa: E731
    reddiff = run("reddiff")
    # sample_batch.sh: 1000 steps, GRAD_WEIGHT=1.0, no lr passed (0.1); see cited_values.csv
    assert (reddiff["steps"], reddiff["lam"], reddiff["lr"], reddiff["output"]) == (1000, 1.0, 0.1,
                                                                                    "before_last_step")
    assert reddiff["obs_mean"] == ("all" if inpaint else "measured")
    dps = run("dps")
    assert (dps["steps"], dps["zeta"], dps["clip_x0"], dps["spacing"]) == (1000, 1.0, True, "respaced")
    pgdm = run("pgdm")
    assert (pgdm["steps"], pgdm["eta"], pgdm["start_t"], pgdm["weighting"]) == (1000, 1.0, 999, "reference")
    assert pgdm["paste_measured"] is inpaint
    ddrm = run("ddrm")
    assert (ddrm["steps"], ddrm["eta"], ddrm["eta_b"], ddrm["last_step_measured"]) == (1000, 1.0, 1.0, "x0_hat")
    for solver in ("reddiff", "dps", "pgdm", "ddrm"):  # every one builds
        instantiate(compose_config([f"+experiment={preset}", f"solver={solver}"]).solver, _convert_="all")


def test_published_settings_follow_the_task_and_yield_to_the_command_line():
    assert solver_settings(["solver=dps", "task=inpaint_random"])["zeta"] == 0.5   # DPS inpainting config
    assert solver_settings(["solver=dps", "task=sr_bicubic4"])["zeta"] == 0.3      # DPS super-resolution config
    assert solver_settings(["solver=dps", "task=phase_retrieval"])["zeta"] == 1.0
    assert solver_settings(["solver=dps", "task=hdr"])["zeta"] == 1.0              # none published: the default
    assert solver_settings(["solver=pgdm", "task=sr4"])["start_t"] == 500          # PiGDM paper, SR
    assert solver_settings(["solver=reddiff", "task=inpaint_half"])["lr"] == 0.1   # sources disagree: the default
    # RED-diff's sample-test lr goes with the operator it was tuned on (issue 27), not the project's look-alike
    assert solver_settings(["solver=reddiff", "task=reddiff_phase_retrieval"])["lr"] == 0.5
    assert solver_settings(["solver=reddiff", "task=phase_retrieval"])["lr"] == 0.1
    assert solver_settings(["solver=reddiff", "task=reddiff_deblur_gauss"])["lr"] == 0.5
    assert solver_settings(["solver=reddiff", "task=deblur_gauss"])["lr"] == 0.1
    assert solver_settings(["solver=pgdm", "task=inpaint_box"])["start_t"] is None
    assert solver_settings(["solver=dps", "task=inpaint_box", "solver.zeta=0.7"])["zeta"] == 0.7
    assert solver_settings(["+experiment=imagenet_sr4", "solver=pgdm",
                            "solver.weighting=paper"])["weighting"] == "paper"
    assert solver_settings(["+experiment=imagenet_sr4", "solver=reddiff", "optimizer.lr=0.5"])["lr"] == 0.5
    # the solvers' own defaults where nobody published anything
    assert solver_settings(["solver=reddiff",
                            "task=sr4"])["lr"] == 0.1 and solver_settings(["solver=pgdm"])["weighting"] == "paper"


def test_the_demo_and_gmm_presets_are_sweeps_without_dash_m():
    from hydra.types import RunMode

    for preset in ("demo", "gmm_posterior", "gmm_posterior_quick"):
        assert compose_config([f"+experiment={preset}"]).hydra.mode == RunMode.MULTIRUN, preset


def test_the_readme_tasks_table_names_every_task_and_its_source():
    """Every conf/task/*.yaml has a row in the README's Tasks table with a "definition from" cell,
    and every task's YAML cites where its definition comes from in its first comment."""
    readme = (CONF.parent / "README.md").read_text()
    table = readme[readme.index("| task | forward model | parameters | definition from | SVD |"):]
    table = table[: table.index("\n\n")]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in re.findall(r"`([a-z0-9_]+)`", cells[0]):
            rows[name] = cells[3]
    for path in sorted((CONF / "task").glob("*.yaml")):
        name = path.stem
        listed = name in rows or (name.startswith("inpaint_freeform_") and "inpaint_freeform_10_20" in rows)
        assert listed, f"{name} has no row in the README's Tasks table"
        assert rows.get(name, rows.get("inpaint_freeform_10_20")), f"{name}: empty 'definition from'"
        assert path.read_text().startswith("#"), f"{path.name} does not open with a comment saying what it is"


CITED = CONF / "published" / "cited_values.csv"


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


@pytest.mark.slow  # 13 compositions: about 15 s
def test_presets_and_solver_defaults_equal_the_lines_they_cite_or_list_a_deviation_with_its_reason():
    """Issue 23: reddiff_paper.yaml said it was sample_batch.sh but ran lambda 0.25 (GRAD_WEIGHT=1.0 there),
    lr 0.25 (not passed: 0.1) and DDRM at 20 steps / eta 0.85 (1000 / 1.0 there); reddiff_parallel had no
    sigma_x0. Each row of conf/published/cited_values.csv (checked against the repositories by
    scripts/check_cited_values.py) is composed here: the setting must be what the table says the project
    uses; where that is not the cited value, the row gives the reason and a preset lists the deviation."""
    import csv

    rows = list(csv.DictReader(CITED.open()))
    assert len(rows) >= 30
    composed: dict[tuple[str, str], DictConfig] = {}
    listed = set()
    for row in rows:
        key = (row["overrides"], row["solver"])
        if key not in composed:
            composed[key] = compose_config([*row["overrides"].split(), f"solver={row['solver']}"])
        cfg = composed[key]
        actual = OmegaConf.select(cfg.solver, row["setting"])
        actual = OmegaConf.to_container(actual) if OmegaConf.is_config(actual) else actual
        used, cited = _value(row["used"]), _value(row["cited"])
        where = f"{row['overrides'] or 'defaults'} {row['solver']}.{row['setting']}"
        assert actual == used, f"{where}: the config gives {actual!r}, the table says {used!r}"
        if used != cited:
            assert row["reason"].strip(), f"{where}: {used!r} is not the cited {cited!r} and no reason is given"
            if row["overrides"].startswith("+experiment="):
                reason = OmegaConf.select(cfg, f"published.deviations.{row['solver']}.{row['setting']}")
                assert reason, f"{where}: the preset does not list this deviation under published.deviations"
                listed.add((row["solver"], row["setting"]))
        else:
            assert not row["reason"].strip(), f"{where}: equal to the cited line, yet a reason is given"
    deviations = OmegaConf.load(CONF / "published" / "reddiff_paper.yaml").get("deviations", {})
    declared = {(solver, setting) for solver, node in deviations.items() for setting in node}
    assert declared == listed, f"deviations without a row in cited_values.csv: {declared - listed}"
