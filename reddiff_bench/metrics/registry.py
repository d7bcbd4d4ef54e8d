"""Every metric a row, a run or the bench reports: its label, its direction and how many
significant digits a table shows. One registry serves the tables of the studies, the report and
sweep tables, the W&B summaries (best value by direction) and the dashboards; a name that is not
here is still shown, under its own name, with no direction."""

from __future__ import annotations

from dataclasses import dataclass

IMAGE, RUN, BENCH = "image", "run", "bench"  # a value per image (a row), per run (summary.json), per bench row


@dataclass(frozen=True)
class Metric:
    label: str
    direction: int  # +1: higher is better, -1: lower is better, 0: neither
    digits: int  # significant digits of the mean
    level: str = IMAGE

    @property
    def run_level(self) -> bool:
        return self.level == RUN


# in the order the report's columns show them
METRICS: dict[str, Metric] = {
    "psnr": Metric("PSNR", +1, 4),
    "ssim": Metric("SSIM", +1, 3),
    "lpips": Metric("LPIPS", -1, 3),
    "top1_correct": Metric("Top-1", +1, 3),
    "lpips_diversity": Metric("LPIPS diversity", 0, 3),
    "mse": Metric("MSE", -1, 3),
    "sw_to_posterior": Metric("SW2 to posterior", -1, 3),
    "sw1_to_posterior": Metric("SW1 to posterior", -1, 3),
    "dist_to_nearest_mode": Metric("Distance to nearest mode", -1, 3),
    "dist_to_post_mean": Metric("Distance to posterior mean", 0, 3),
    "mse_to_post_mean": Metric("MSE to posterior mean", -1, 3),
    "prior_nll": Metric("NLL under the prior (nats/dim)", 0, 4),
    "prior_nll_truth": Metric("NLL of the ground truth under the prior (nats/dim)", 0, 4),
    "psnr_post_mean": Metric("PSNR of posterior mean", 0, 4),
    "mse_post_mean": Metric("MSE of posterior mean", 0, 3),
    "data_consistency": Metric("Data consistency", 0, 3),
    "sample_std": Metric("Sample std", 0, 3),
    "nfe": Metric("NFE", -1, 4),
    "vjp": Metric("VJP", -1, 4),
    "decoder_calls": Metric("Decoder calls", -1, 4),  # latent priors: autoencoder passes per image
    "decoder_vjp": Metric("Decoder VJP", -1, 4),
    "encoder_calls": Metric("Encoder calls", -1, 4),
    "encoder_vjp": Metric("Encoder VJP", -1, 4),
    "seconds": Metric("Seconds / image", -1, 3),
    "peak_mem_mb": Metric("Peak memory (MiB)", -1, 4),
    "fid": Metric("FID", -1, 4, level=RUN),
    "kid": Metric("KID", -1, 3, level=RUN),
    # python -m reddiff_bench bench
    "time_ratio": Metric("Time / floor", -1, 3, level=BENCH),
    "mem_ratio": Metric("Memory / floor", -1, 3, level=BENCH),
    "solve_seconds": Metric("Solve (s)", -1, 3, level=BENCH),
    "floor_seconds": Metric("Floor (s)", -1, 3, level=BENCH),
    "floor_mem_mb": Metric("Floor peak memory (MiB)", -1, 4, level=BENCH),
    "seconds_per_image": Metric("Seconds / image", -1, 3, level=BENCH),
}
NOTE_OF = {"kid": "fid", "top1_correct": "top1"}  # the run note that explains a missing metric
# the autoencoder's passes: 0 in every row of a pixel prior, where a report leaves them out
AUTOENCODER_COLUMNS = ("decoder_calls", "decoder_vjp", "encoder_calls", "encoder_vjp")


def metric(name: str) -> Metric:
    """The registered metric ``name``, or one labelled by its name with no direction."""
    return METRICS.get(name, Metric(name, 0, 4))


def image_metrics() -> list[str]:
    """The per-image metrics, in the registry's order (the report's columns)."""
    return [name for name, m in METRICS.items() if m.level == IMAGE]
