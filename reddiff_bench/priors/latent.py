"""Latent priors: a diffusion model over the latents ``z`` of an autoencoder, ``x = D(z)``, ``z = E(x)``.

A :class:`LatentPrior` is a :class:`~reddiff_bench.priors.DiffusionPrior` whose network takes
latents (``state_shape``) while its data are images (``image_shape``, what the dataset yields and
what the metrics score). Its ``latent`` attribute is the same diffusion model seen as a prior over
latents (its ``image_shape`` is the latent shape, with no data range), which the latent solvers
hand to the pixel-space update they extend. Both share one :class:`CallCounter`; the autoencoder's
passes are counted by :meth:`LatentPrior.decode` and :meth:`LatentPrior.encode` (one per image per
call) and their vector-Jacobian products by hooks on the outputs, as the network's are.

Priors built here:

* :func:`linear_gmm_prior`: the exact latent track. A linear decoder ``D(z) = W z + b`` (``W`` of
  full column rank: the top principal directions of the photo mixture, scaled to unit variance, or
  random), the encoder its pseudo-inverse, and a Gaussian mixture over ``z``: the photo mixture of
  ``gmm_photos`` pushed through the encoder. Every linear inverse problem in ``x`` then has an
  exact posterior, in ``z`` and in ``x``. ``view="pixel"`` gives the same prior as a pixel-space
  Gaussian mixture (covariances ``W Sigma_k W^T``, of rank ``k``) for the pixel solvers.
* :func:`ldm_prior`: a ``VQModel`` or ``AutoencoderKL`` with a ``UNet2DModel`` (the LDM models,
  e.g. ``CompVis/ldm-celebahq-256``) from a hub id or a local pipeline folder.
* :func:`stable_diffusion_prior`: ``AutoencoderKL`` with a ``UNet2DConditionModel`` conditioned on
  a prompt embedding (the empty prompt by default), classifier-free guidance a setting.
* :func:`random_ldm_prior`, :func:`random_sd_prior`: the same architectures with random weights,
  built from their configs, for cost measurements and tests.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor

from ..diffusion import VPSchedule
from ..errors import ConfigError
from .base import DiffusionPrior, Prediction
from .diffusers_prior import DiffusersPrior, load_scheduler_config, schedule_from_scheduler_config, source_path
from .gmm import GaussianMixture, GMMPrior, photo_gmm_prior


def latent_factory(fn):
    """Mark a model factory as building a latent prior, so that a run can refuse a pixel solver
    before the prior is loaded."""
    fn.space = "latent"
    return fn


class LatentPrior(DiffusionPrior):
    """A diffusion model over latents (``latent``) with the autoencoder that maps them to images."""

    space = "latent"

    def __init__(self, latent: DiffusionPrior, autoencoder: torch.nn.Module, image_shape: tuple[int, int, int],
                 name: str):
        super().__init__(latent.schedule, image_shape, name)
        self.latent = latent
        self.autoencoder = autoencoder
        self.state_shape = tuple(latent.image_shape)
        self.latent_shape = self.state_shape
        self.prediction_type = latent.prediction_type
        latent.data_range = None  # latents are unbounded
        latent.counter = self.counter  # one counter: the network's calls and the autoencoder's

    def network(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.latent.network(x_t, t)

    def predict(self, x_t: Tensor, t: Tensor | int, evaluations: int = 1) -> Prediction:
        return self.latent.predict(x_t, t, evaluations)

    def _counted(self, out: Tensor, field: str) -> Tensor:
        setattr(self.counter, field, getattr(self.counter, field) + 1)
        if out.requires_grad:
            out.register_hook(lambda grad: self._count(f"{field}_vjp"))
        return out

    def _count(self, field: str) -> None:
        setattr(self.counter, field, getattr(self.counter, field) + 1)

    def decode(self, z: Tensor) -> Tensor:
        """Images (B, C, H, W) of latents (B, *latent_shape); one decoder pass per image."""
        if tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(f"prior {self.name!r} decodes latents of shape {self.latent_shape}, got "
                             f"{tuple(z.shape[1:])}")
        return self._counted(self.autoencoder.decode(z), "decoder")

    def encode(self, x: Tensor) -> Tensor:
        """Latents of images; one encoder pass per image."""
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"prior {self.name!r} encodes images of shape {self.image_shape}, got "
                             f"{tuple(x.shape[1:])}")
        return self._counted(self.autoencoder.encode(x), "encoder")


class LinearAutoencoder(torch.nn.Module):
    """``D(z) = W z + b`` and ``E(x) = W^+ (x - b)`` on flattened tensors; ``W`` (d, k), k <= d."""

    def __init__(self, W: Tensor, b: Tensor, latent_shape: tuple[int, ...], image_shape: tuple[int, ...]):
        super().__init__()
        d, k = W.shape
        if k > d or int(torch.linalg.matrix_rank(W.double())) < k:
            raise ValueError(f"the decoder matrix W {tuple(W.shape)} must have full column rank")
        self.register_buffer("W", W.float())
        self.register_buffer("b", b.float())
        self.register_buffer("W_pinv", torch.linalg.pinv(W.double()).float())
        self.latent_shape, self.image_shape = tuple(latent_shape), tuple(image_shape)

    def decode(self, z: Tensor) -> Tensor:
        return (z.reshape(z.shape[0], -1) @ self.W.T.to(z.dtype) + self.b.to(z.dtype)).reshape(-1, *self.image_shape)

    def encode(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1) - self.b.to(x.dtype)
        return (flat @ self.W_pinv.T.to(x.dtype)).reshape(-1, *self.latent_shape)


class LinearGMMLatentPrior(LatentPrior):
    """The exact latent track: a Gaussian mixture over ``z`` and a linear decoder. Its exact
    posteriors are given in pixel space (the metrics' space), through the pushed-forward mixture."""

    def __init__(self, latent: GMMPrior, autoencoder: LinearAutoencoder, pixel: GaussianMixture, name: str):
        super().__init__(latent, autoencoder, autoencoder.image_shape, name)
        self.pixel_reference = (pixel.double().cpu(),)

    def exact_posterior_mean(self, A: Tensor, y: Tensor, sigma_y: float) -> Tensor:
        return self.pixel_reference[0].posterior_mean(A.detach().double().cpu(), y.detach().double().cpu(), sigma_y)

    def exact_posterior_samples(self, A: Tensor, y: Tensor, sigma_y: float, n: int,
                                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        return self.pixel_reference[0].posterior_samples(A.detach().double().cpu(), y.detach().double().cpu(),
                                                         sigma_y, n, generator)

    def latent_posterior(self, A: Tensor, y: Tensor, sigma_y: float) -> GaussianMixture:
        """The exact posterior of ``z`` given ``y = A x + sigma_y e`` (A on flattened images), float64."""
        ae = self.autoencoder
        A = A.detach().double().cpu()
        return self.latent.reference[0].posterior(A @ ae.W.double().cpu(),
                                                  y.detach().double().cpu() - A @ ae.b.double().cpu(), sigma_y)


def push_forward(mixture: GaussianMixture, W: Tensor, b: Tensor) -> GaussianMixture:
    """The mixture of ``W z + b`` for ``z`` drawn from ``mixture`` (singular when W is tall)."""
    W, b = W.to(mixture.means), b.to(mixture.means)
    covariances = W[None] @ mixture.covariances() @ W.T[None]
    return GaussianMixture.from_covariances(mixture.weights, mixture.means @ W.T + b, covariances)


def linear_decoder(pixel: GaussianMixture, k: int, kind: str, seed: int) -> tuple[Tensor, Tensor]:
    """``W`` (d, k) and ``b`` (d,): ``pca``, the mixture's top-k principal directions, all scaled by one
    factor that gives the latents unit variance on average (as Stable Diffusion's scale factor does:
    its latents are not whitened), and the mixture's mean; ``random``, a Gaussian matrix of the same
    overall scale."""
    mean = pixel.mean()
    centred = pixel.means - mean
    cov = torch.einsum("k,kij->ij", pixel.weights, pixel.covariances() + centred[:, :, None] * centred[:, None, :])
    evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    top_vals, top_vecs = evals.flip(0)[:k].clamp_min(1e-12), evecs.flip(1)[:, :k]
    if kind == "pca":
        return top_vecs * top_vals.mean().sqrt(), mean
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(pixel.dim, k, generator=g, dtype=torch.float64) * (top_vals.mean() / pixel.dim).sqrt()
        return W, mean
    raise ConfigError(f"model.decoder must be pca or random, got {kind!r}")


@latent_factory
def linear_gmm_prior(latent_shape: tuple[int, int, int] = (4, 4, 4), decoder: str = "pca", decoder_seed: int = 0,
                     **photo_gmm) -> LinearGMMLatentPrior:
    """The exact latent track over ``photo_gmm`` (the arguments of ``photo_gmm_prior``)."""
    return _linear_gmm("latent", latent_shape, decoder, decoder_seed, photo_gmm)


def linear_gmm_pixel_prior(latent_shape: tuple[int, int, int] = (4, 4, 4), decoder: str = "pca",
                           decoder_seed: int = 0, **photo_gmm) -> GMMPrior:
    """The same prior as :func:`linear_gmm_prior`, seen in pixel space: a :class:`GMMPrior` with
    covariances of rank ``k``, for the pixel solvers on the same images and measurements."""
    return _linear_gmm("pixel", latent_shape, decoder, decoder_seed, photo_gmm)


def _linear_gmm(view: str, latent_shape, decoder: str, decoder_seed: int, photo_gmm: dict) -> DiffusionPrior:
    photos = photo_gmm_prior(**photo_gmm)
    pixel_photos = photos.reference[0]
    latent_shape = tuple(int(s) for s in latent_shape)
    k = int(torch.tensor(latent_shape).prod())
    if k > pixel_photos.dim:
        raise ConfigError(f"model.latent_shape {latent_shape} has {k} entries, more than the {pixel_photos.dim} "
                          f"pixels of the images: a linear decoder must have full column rank")
    W, b = linear_decoder(pixel_photos, k, decoder, decoder_seed)
    W_pinv = torch.linalg.pinv(W)
    latent_mix = push_forward(pixel_photos, W_pinv, -W_pinv @ b)  # the photo mixture's encoding
    pixel = push_forward(latent_mix, W, b)
    tag = f"{decoder}{'x'.join(map(str, latent_shape))}"
    if view == "pixel":
        return GMMPrior(pixel, photos.image_shape, photos.schedule, f"gmm_latent_{tag}_pixel")
    latent = GMMPrior(latent_mix, latent_shape, photos.schedule, f"gmm_latent_{tag}_z")
    autoencoder = LinearAutoencoder(W, b, latent_shape, photos.image_shape)
    return LinearGMMLatentPrior(latent, autoencoder, pixel, f"gmm_latent_{tag}")


# ---------------------------------------------------------------------------------------------
# diffusers latent priors


class DiffusersAutoencoder(torch.nn.Module):
    """A diffusers ``AutoencoderKL`` (``kind="kl"``: the encoder's mean, scaled by
    ``scaling_factor``, as Stable Diffusion's latents are) or ``VQModel`` (``kind="vq"``: the
    pre-quantisation latents, quantised by the decoder, as LDM's are)."""

    def __init__(self, vae, kind: str):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.kind = kind
        self.scaling = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z / self.scaling).sample

    def encode(self, x: Tensor) -> Tensor:
        if self.kind == "vq":
            return self.vae.encode(x).latents
        return self.vae.encode(x).latent_dist.mean * self.scaling


class ConditionalUNetPrior(DiffusersPrior):
    """A ``UNet2DConditionModel`` over latents, conditioned on a fixed prompt embedding (1, L, D).
    ``guidance_scale`` != 1: classifier-free guidance against the ``negative`` embedding (the
    empty prompt), two network passes per evaluation, both counted."""

    def __init__(self, unet, schedule: VPSchedule, name: str, embedding: Tensor, negative: Tensor | None = None,
                 guidance_scale: float = 1.0, autocast: str = "none", prediction_type: str = "epsilon"):
        super().__init__(unet, schedule, name, autocast, prediction_type)
        self.register_buffer("embedding", embedding.float())
        self.register_buffer("negative", (negative if negative is not None else embedding).float())
        self.guidance_scale = float(guidance_scale)
        self.passes = 1 if self.guidance_scale == 1.0 else 2

    def _unet(self, x_t: Tensor, t: Tensor, context: Tensor) -> Tensor:
        return self.unet(x_t, t, encoder_hidden_states=context.expand(x_t.shape[0], -1, -1).to(x_t.dtype)).sample

    def network(self, x_t: Tensor, t: Tensor) -> Tensor:
        with self.autocast_context(x_t):
            if self.passes == 1:
                out = self._unet(x_t, t, self.embedding)
            else:
                both = self._unet(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                  torch.cat([self.negative.expand(x_t.shape[0], -1, -1),
                                             self.embedding.expand(x_t.shape[0], -1, -1)]))
                uncond, cond = both.chunk(2)
                out = uncond + self.guidance_scale * (cond - uncond)
        return out[:, : self.image_shape[0]].to(x_t.dtype)


def _load(cls, source: str, subfolder: str | None, kwargs: dict, what: str):
    try:
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)
    except (OSError, ValueError) as err:
        raise ConfigError(f"could not load the {what} of {source!r} (subfolder {subfolder!r}): {err}. Without network, "
                          f"download the pipeline elsewhere (huggingface-cli download {source}) into the HF cache or a "
                          f"local directory, and set model.source to that directory.") from err


def _autoencoder_of(source: str, path: Path, local: bool, kwargs: dict) -> DiffusersAutoencoder:
    from diffusers import AutoencoderKL, VQModel  # heavy, optional: imported when used

    if local:
        if (path / "vqvae").is_dir():
            return DiffusersAutoencoder(_load(VQModel, str(path), "vqvae", kwargs, "VQ autoencoder"), "vq")
        if (path / "vae").is_dir():
            return DiffusersAutoencoder(_load(AutoencoderKL, str(path), "vae", kwargs, "autoencoder"), "kl")
        raise ConfigError(f"{path} has neither vqvae/ nor vae/: a latent prior needs its autoencoder")
    try:
        return DiffusersAutoencoder(VQModel.from_pretrained(source, subfolder="vqvae", **kwargs), "vq")
    except OSError:
        return DiffusersAutoencoder(_load(AutoencoderKL, source, "vae", kwargs, "autoencoder"), "kl")


def _image_shape(autoencoder: DiffusersAutoencoder, latent_shape: tuple[int, ...]) -> tuple[int, int, int]:
    factor = 2 ** (len(autoencoder.vae.config.block_out_channels) - 1)
    return (int(autoencoder.vae.config.in_channels), latent_shape[1] * factor, latent_shape[2] * factor)


def _pipeline(source: str, unet_class, cache_dir: str | None, local_files_only: bool):
    """The UNet (``unet_class``), the autoencoder and the scheduler config of a pipeline, and the
    loading arguments (for its other parts)."""
    path, local = source_path(source, local_files_only)
    kwargs = dict(cache_dir=cache_dir, local_files_only=local_files_only)
    unet = _load(unet_class, source, "unet", kwargs, "latent UNet")
    try:
        config = load_scheduler_config(source, path if local else None, kwargs)
    except OSError as err:
        raise ConfigError(f"could not read the scheduler of {source!r}: {err}") from err
    if not config:  # a latent pipeline's schedule is its own (LDM and SD: scaled-linear betas)
        raise ConfigError(f"{source} has no scheduler/scheduler_config.json: a latent pipeline needs its scheduler")
    return path, kwargs, unet, _autoencoder_of(source, path, local, kwargs), config


@latent_factory
def ldm_prior(source: str = "CompVis/ldm-celebahq-256", name: str | None = None, autocast: str = "none",
              cache_dir: str | None = None, local_files_only: bool = False) -> LatentPrior:
    """An unconditional latent diffusion model: ``unet/`` (UNet2DModel), ``vqvae/`` or ``vae/``
    and ``scheduler/`` of a hub id or a local pipeline folder."""
    from diffusers import UNet2DModel  # heavy, optional: imported when used

    path, _, unet, autoencoder, config = _pipeline(source, UNet2DModel, cache_dir, local_files_only)
    latent = DiffusersPrior(unet, schedule_from_scheduler_config(config), name=f"{name or path.name}_z",
                            autocast=autocast, prediction_type=str(config.get("prediction_type", "epsilon")))
    return LatentPrior(latent, autoencoder, _image_shape(autoencoder, latent.image_shape), name or path.name or source)


def prompt_embedding(source: str, prompt: str, kwargs: dict, embeds_file: str | None) -> Tensor:
    """The text encoder's last hidden state (1, L, D) for ``prompt``: read from ``embeds_file``
    (a tensor saved by ``torch.save``), or computed with the pipeline's CLIP text encoder."""
    if embeds_file:
        path = Path(embeds_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.prompt_embeds {path} does not exist")
        embedding = torch.load(path, map_location="cpu", weights_only=True)
        return embedding.reshape(1, *embedding.shape[-2:])
    if importlib.util.find_spec("transformers") is None:
        raise ConfigError("Stable Diffusion's prompt embedding needs the transformers package (its CLIP text "
                          "encoder): pip install transformers, or set model.prompt_embeds to a saved (1, 77, D) tensor")
    from transformers import CLIPTextModel, CLIPTokenizer  # heavy, optional: imported when used

    tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs)
    encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **kwargs).eval()
    ids = tokenizer([prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids)[0]


@latent_factory
def stable_diffusion_prior(source: str = "stable-diffusion-v1-5/stable-diffusion-v1-5", prompt: str = "",
                           guidance_scale: float = 1.0, prompt_embeds: str | None = None, name: str | None = None,
                           autocast: str = "none", cache_dir: str | None = None,
                           local_files_only: bool = False) -> LatentPrior:
    """Stable Diffusion (1.5, 2.1): ``unet/`` (UNet2DConditionModel), ``vae/`` (AutoencoderKL),
    ``scheduler/`` and the text encoder, conditioned on ``prompt`` (empty by default);
    ``guidance_scale`` against the empty prompt."""
    from diffusers import UNet2DConditionModel  # heavy, optional: imported when used

    path, kwargs, unet, autoencoder, config = _pipeline(source, UNet2DConditionModel, cache_dir, local_files_only)
    embedding = prompt_embedding(source, prompt, kwargs, prompt_embeds)
    negative = prompt_embedding(source, "", kwargs, None) if guidance_scale != 1.0 and prompt else embedding
    latent = ConditionalUNetPrior(unet, schedule_from_scheduler_config(config), f"{name or path.name}_z", embedding,
                                  negative, guidance_scale, autocast, str(config.get("prediction_type", "epsilon")))
    return LatentPrior(latent, autoencoder, _image_shape(autoencoder, latent.image_shape), name or path.name or source)


# Random-weight architectures, from the models' own configs:
# * LDM CelebA-HQ f4 (CompVis latent-diffusion ``configs/latent-diffusion/celebahq-ldm-vq-4.yaml``, as
#   vendored by soominkwon/resample 3e332b2): UNet model_channels 224, channel_mult (1, 2, 3, 4),
#   attention at downsampling 2, 4, 8, 2 res blocks, 32 channels per head; VQ f4 first stage
#   (ch 128, ch_mult (1, 2, 4), z 3, 8192 codes); betas linear in sqrt from 0.0015 to 0.0195.
# * Stable Diffusion 1.x (``configs/stable-diffusion/v1-inference.yaml``, same repository): UNet
#   model_channels 320, channel_mult (1, 2, 4, 4), attention at 4, 2, 1, 8 heads, context 768;
#   KL f8 first stage (ch 128, ch_mult (1, 2, 4, 4), z 4), scale factor 0.18215; betas 0.00085 to
#   0.012 linear in sqrt. Its prompt embedding is random here (77 tokens of 768).
LDM_CELEBAHQ = dict(
    unet=dict(in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(224, 448, 672, 896),
              down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
              up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
              attention_head_dim=32),
    vae=dict(in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(128, 256, 512),
             down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
             layers_per_block=2, num_vq_embeddings=8192, vq_embed_dim=3),
    betas=dict(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", num_train_timesteps=1000),
)
SD_V1 = dict(
    unet=dict(in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
              down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
              up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, attention_head_dim=8,
              cross_attention_dim=768),
    vae=dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
             layers_per_block=2, scaling_factor=0.18215),
    betas=dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000),
    tokens=77,
)


@latent_factory
def random_ldm_prior(latent_size: int = 64, seed: int = 0, name: str | None = None) -> LatentPrior:
    """The LDM CelebA-HQ architecture (VQ f4 + UNet2DModel) with random weights, latents of side
    ``latent_size`` (64: 256-pixel images)."""
    from diffusers import UNet2DModel, VQModel  # heavy, optional: imported when used

    name = name or f"ldm_random-{latent_size * 4}px"
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=latent_size, **LDM_CELEBAHQ["unet"])
    vae = VQModel(sample_size=latent_size * 4, **LDM_CELEBAHQ["vae"])
    latent = DiffusersPrior(unet, schedule_from_scheduler_config(LDM_CELEBAHQ["betas"]), name=f"{name}_z")
    autoencoder = DiffusersAutoencoder(vae, "vq")
    return LatentPrior(latent, autoencoder, _image_shape(autoencoder, latent.image_shape), name)


@latent_factory
def random_sd_prior(latent_size: int = 64, guidance_scale: float = 1.0, seed: int = 0,
                    name: str | None = None) -> LatentPrior:
    """The Stable Diffusion 1.x architecture (KL f8 + UNet2DConditionModel) with random weights and
    a random prompt embedding, latents of side ``latent_size`` (64: 512-pixel images)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel  # heavy, optional: imported when used

    name = name or f"sd_random-{latent_size * 8}px"
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=latent_size, **SD_V1["unet"])
    vae = AutoencoderKL(sample_size=latent_size * 8, **SD_V1["vae"])
    g = torch.Generator().manual_seed(seed)
    embedding = torch.randn(1, SD_V1["tokens"], SD_V1["unet"]["cross_attention_dim"], generator=g)
    negative = torch.randn(1, SD_V1["tokens"], SD_V1["unet"]["cross_attention_dim"], generator=g)
    latent = ConditionalUNetPrior(unet, schedule_from_scheduler_config(SD_V1["betas"]), f"{name}_z", embedding,
                                  negative, guidance_scale)
    autoencoder = DiffusersAutoencoder(vae, "kl")
    return LatentPrior(latent, autoencoder, _image_shape(autoencoder, latent.image_shape), name)
