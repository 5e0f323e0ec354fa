"""Generators and discriminators, one `ModelSpec` entry per model in the `MODELS` registry.

`paper_mlp` is the MNIST model of Goodfellow et al. (2014) as released (goodfeli/adversarial, mnist.yaml):
G: noise(100) -> ReLU 1200 -> ReLU 1200 -> sigmoid(pixels), weights uniform in +-0.05, output bias = logit of the
training pixels' mean; D: maxout 240x5 -> maxout 240x5 -> sigmoid, weights uniform in +-0.005, dropout keeping 0.8 of
the pixels and 0.5 of the hidden units (inverted scaling). `dcgan` is a convolutional pair for 8..48-pixel images.
Discriminators return logits (one per image); losses apply the sigmoid themselves for numerical stability.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gan_core.losses import ADAM_ALTERNATING
from gan_core.registry import by_name, lookup

ImageShape = tuple[int, int, int]


def sample_noise(
    batch: int, dim: int, kind: str, device: torch.device | str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Unit-variance latent noise: `uniform` on [-sqrt(3), sqrt(3)] (the paper) or `gaussian` N(0, 1)."""
    if kind == "uniform":
        bound = math.sqrt(3.0)
        return torch.rand(batch, dim, device=device, generator=generator).mul_(2 * bound).sub_(bound)
    if kind == "gaussian":
        return torch.randn(batch, dim, device=device, generator=generator)
    raise ValueError(f"unknown noise kind {kind!r}; expected 'uniform' or 'gaussian'")


class Maxout(nn.Module):
    """Linear layer to units x pieces followed by a max over each unit's consecutive pieces (pylearn2's Maxout)."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=2)


def one_hot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Labels as one-hot rows in the dtype and device of `like`."""
    return nn.functional.one_hot(labels, num_classes).to(like)


class MLPGenerator(nn.Module):
    """Noise -> ReLU hidden layers -> sigmoid image, as in the paper. Conditional (`num_classes` > 0): the label's
    one-hot vector is concatenated to the noise (Mirza & Osindero, 2014)."""

    def __init__(
        self, image_shape: ImageShape, noise_dim: int, hidden: tuple[int, ...], init_range: float, num_classes: int = 0
    ) -> None:
        super().__init__()
        self.image_shape, self.noise_dim, self.num_classes = image_shape, noise_dim, num_classes
        layers: list[nn.Module] = []
        width = noise_dim + num_classes
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(width, math.prod(image_shape))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.uniform_(module.weight, -init_range, init_range)
                nn.init.zeros_(module.bias)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([z, one_hot(labels, self.num_classes, z)], dim=1)
        return torch.sigmoid(self.output(self.hidden(z))).view(z.shape[0], *self.image_shape)


class MaxoutDiscriminator(nn.Module):
    """Dropout -> maxout layers -> one logit per image, with the paper's per-layer input keep probabilities.
    Conditional (`num_classes` > 0): the label's one-hot vector joins the pixels after their dropout (never dropped)."""

    def __init__(
        self,
        image_shape: ImageShape,
        units: int,
        pieces: int,
        layers: int,
        init_range: float,
        input_keep: float,
        hidden_keep: float,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        blocks: list[nn.Module] = []
        width = math.prod(image_shape) + num_classes
        for index in range(layers):
            blocks += [nn.Dropout(1.0 - (input_keep if index == 0 else hidden_keep)), Maxout(width, units, pieces)]
            width = units
        blocks += [nn.Dropout(1.0 - hidden_keep), nn.Linear(width, 1)]
        self.net = nn.Sequential(*blocks)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.uniform_(module.weight, -init_range, init_range)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if not self.num_classes:
            return self.net(x.flatten(1)).squeeze(1)
        pixels = self.net[0](x.flatten(1))  # the input dropout
        return self.net[1:](torch.cat([pixels, one_hot(labels, self.num_classes, pixels)], dim=1)).squeeze(1)


def _upsampling_plan(size: int) -> tuple[int, int]:
    """(base size, number of stride-2 steps) with base in 4..7 and base * 2**steps == size."""
    steps = 0
    while size % 2 == 0 and size // 2 >= 4:
        size //= 2
        steps += 1
    if not 4 <= size <= 7 or steps == 0:
        raise ValueError(f"dcgan supports square images of 8..56 pixels halving down to 4..7, got {size << steps}")
    return size, steps


class ConvGenerator(nn.Module):
    """DCGAN-style generator: linear to a small feature map, stride-2 transposed convolutions, sigmoid output.
    Conditional (`num_classes` > 0): the label's one-hot vector is concatenated to the noise."""

    def __init__(self, image_shape: ImageShape, noise_dim: int, width: int, num_classes: int = 0) -> None:
        super().__init__()
        channels, height, _ = image_shape
        self.image_shape, self.noise_dim, self.num_classes = image_shape, noise_dim, num_classes
        base, steps = _upsampling_plan(height)
        top = width * 2 ** (steps - 1)
        self.base, self.top = base, top
        self.project = nn.Sequential(
            nn.Linear(noise_dim + num_classes, top * base * base), nn.BatchNorm1d(top * base * base), nn.ReLU()
        )
        layers: list[nn.Module] = []
        in_ch = top
        for step in range(steps - 1):
            out_ch = width * 2 ** (steps - 2 - step)
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU()]
            in_ch = out_ch
        layers += [nn.ConvTranspose2d(in_ch, channels, 4, 2, 1)]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([z, one_hot(labels, self.num_classes, z)], dim=1)
        h = self.project(z).view(z.shape[0], self.top, self.base, self.base)
        return torch.sigmoid(self.deconv(h))


class ConvDiscriminator(nn.Module):
    """DCGAN-style discriminator: stride-2 convolutions with leaky ReLU (no batch norm, so WGAN-GP works), a logit.
    Conditional (`num_classes` > 0): the label enters as one constant one-hot plane per class beside the image's
    channels, so every convolution sees it. `spectral_norm`: every layer's weight is divided by its largest singular
    value (one power iteration per training forward; Miyato et al., 2018), which bounds D's Lipschitz constant."""

    def __init__(self, image_shape: ImageShape, width: int, num_classes: int = 0, spectral_norm: bool = False) -> None:
        super().__init__()
        channels, height, _ = image_shape
        self.num_classes = num_classes
        base, steps = _upsampling_plan(height)
        layers: list[nn.Module] = []
        in_ch = channels + num_classes
        for step in range(steps):
            out_ch = width * 2**step
            layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1), nn.LeakyReLU(0.2)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch * base * base, 1)
        if spectral_norm:
            for module in [*self.features, self.head]:
                if isinstance(module, nn.Conv2d | nn.Linear):
                    nn.utils.parametrizations.spectral_norm(module)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            planes = one_hot(labels, self.num_classes, x)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, planes], dim=1)
        return self.head(self.features(x).flatten(1)).squeeze(1)


class GaussianNoise(nn.Module):
    """Adds N(0, sigma^2) noise to its input in training and nothing in evaluation (improved-gan's
    GaussianNoiseLayer: the semi-supervised discriminator's regulariser)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x) if self.training else x


class SemiSupervisedDiscriminator(nn.Module):
    """Salimans et al. (2016)'s MNIST discriminator (openai/improved-gan): a K-class classifier, noise of sigma 0.3 on
    the pixels and 0.5 before every further layer, weight-normalised ReLU layers 1000-500-250-250-250, K class logits.
    Its GAN logit is log sum_k exp(l_k), so that D(x) = Z(x) / (Z(x) + 1) with Z = sum_k exp(l_k): "real" is any
    of the K classes, "fake" the (K+1)-th class whose logit is fixed at 0. `features` (the last hidden layer) is
    what feature matching compares."""

    def __init__(
        self,
        image_shape: ImageShape,
        num_classes: int,
        hidden: tuple[int, ...] = (1000, 500, 250, 250, 250),
        input_noise: float = 0.3,
        hidden_noise: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = math.prod(image_shape)
        for index, units in enumerate(hidden):
            layers += [
                GaussianNoise(input_noise if index == 0 else hidden_noise),
                _weight_norm(width, units),
                nn.ReLU(),
            ]
            width = units
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(GaussianNoise(hidden_noise), _weight_norm(width, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.logsumexp(self.class_logits(x), dim=1)


def _weight_norm(in_features: int, out_features: int) -> nn.Module:
    """A linear layer with its weight as direction times length (Salimans & Kingma, 2016), as improved-gan's."""
    return nn.utils.parametrizations.weight_norm(nn.Linear(in_features, out_features))


class SemiSupervisedGenerator(nn.Module):
    """improved-gan's MNIST generator: noise -> 500 -> 500 (batch norm, softplus) -> sigmoid image with a
    weight-normalised output layer."""

    def __init__(self, image_shape: ImageShape, noise_dim: int, hidden: tuple[int, ...] = (500, 500)) -> None:
        super().__init__()
        self.image_shape, self.noise_dim, self.num_classes = image_shape, noise_dim, 0
        layers: list[nn.Module] = []
        width = noise_dim
        for units in hidden:
            layers += [nn.Linear(width, units), nn.BatchNorm1d(units), nn.Softplus()]
            width = units
        self.hidden = nn.Sequential(*layers)
        self.output = _weight_norm(width, math.prod(image_shape))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.output(self.hidden(z))).view(z.shape[0], *self.image_shape)


class BidirectionalGenerator(nn.Module):
    """BiGAN / ALI (Donahue et al. 2016; Dumoulin et al. 2016): the paper's generator (`decoder`, z -> x) and an
    encoder x -> z trained together against a discriminator of (x, z) pairs. Sampling calls it as a generator (the
    decoder); `encode` is the learned inverse."""

    def __init__(self, image_shape: ImageShape, noise_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.image_shape, self.noise_dim, self.num_classes = image_shape, noise_dim, 0
        self.decoder = MLPGenerator(image_shape, noise_dim, hidden, init_range=0.05)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(image_shape)
        for units in hidden:
            layers += [nn.Linear(width, units), nn.LeakyReLU(0.2)]
            width = units
        self.encoder = nn.Sequential(*layers, nn.Linear(width, noise_dim))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class JointDiscriminator(nn.Module):
    """D of BiGAN / ALI: a logit for an (image, latent) pair, "real" for (x, E(x)), "fake" for (G(z), z): the
    paper's maxout layers with dropout over the pixels and the latent vector side by side."""

    def __init__(self, image_shape: ImageShape, noise_dim: int, units: int, pieces: int) -> None:
        super().__init__()
        self.input_dropout = nn.Dropout(0.2)
        self.net = nn.Sequential(
            Maxout(math.prod(image_shape) + noise_dim, units, pieces),
            nn.Dropout(0.5),
            Maxout(units, units, pieces),
            nn.Dropout(0.5),
            nn.Linear(units, 1),
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.uniform_(module.weight, -0.005, 0.005)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.input_dropout(x.flatten(1)), z], dim=1)).squeeze(1)


@dataclass(frozen=True)
class ModelPair:
    """A generator, its discriminator and the latent settings sampling needs (`num_classes` > 0: conditional, both
    players take the class labels as a second argument)."""

    generator: nn.Module
    discriminator: nn.Module
    noise_dim: int
    num_classes: int = 0


Builder = Callable[[ImageShape, int], ModelPair]  # (image shape, number of classes) -> the pair


def _paper_mlp(g_hidden: tuple[int, ...], d_units: int, d_pieces: int, conditional: bool = False) -> Builder:
    def build(image_shape: ImageShape, num_classes: int = 0) -> ModelPair:
        classes = num_classes if conditional else 0
        generator = MLPGenerator(image_shape, noise_dim=100, hidden=g_hidden, init_range=0.05, num_classes=classes)
        discriminator = MaxoutDiscriminator(
            image_shape,
            units=d_units,
            pieces=d_pieces,
            layers=2,
            init_range=0.005,
            input_keep=0.8,
            hidden_keep=0.5,
            num_classes=classes,
        )
        return ModelPair(generator, discriminator, noise_dim=100, num_classes=classes)

    return build


def _dcgan(width: int, conditional: bool = False, spectral_norm: bool = False) -> Builder:
    def build(image_shape: ImageShape, num_classes: int = 0) -> ModelPair:
        classes = num_classes if conditional else 0
        generator = ConvGenerator(image_shape, 100, width, num_classes=classes)
        discriminator = ConvDiscriminator(image_shape, width, classes, spectral_norm=spectral_norm)
        return ModelPair(generator, discriminator, noise_dim=100, num_classes=classes)

    return build


def _semi_supervised(image_shape: ImageShape, num_classes: int = 0) -> ModelPair:
    # the generator alone is rebuilt with no classes (sampling): its discriminator is then built for two and dropped
    discriminator = SemiSupervisedDiscriminator(image_shape, max(num_classes, 2))
    return ModelPair(SemiSupervisedGenerator(image_shape, noise_dim=100), discriminator, noise_dim=100)


def _bidirectional(image_shape: ImageShape, num_classes: int = 0) -> ModelPair:
    generator = BidirectionalGenerator(image_shape, noise_dim=100, hidden=(1200, 1200))
    return ModelPair(generator, JointDiscriminator(image_shape, 100, units=240, pieces=5), noise_dim=100)


@dataclass(frozen=True)
class ModelSpec:
    """One registered generator/discriminator pair: how to build it for an image shape, and the training settings it
    recommends (applied before the loss's recipe and the user's overrides)."""

    name: str
    build: Builder
    recipe: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    conditional: bool = False  # both players see the class label; samples are drawn for asked labels
    # its seeds can be stacked as one batched model (gan_core.batched): an unconditional pair of MLPGenerator and
    # MaxoutDiscriminator, whose layers the stacked step knows
    batchable: bool = False
    # its discriminator is a K-class classifier trained on a labelled subset beside the GAN game
    # (gan_core.semi_supervised; TrainConfig.labels_per_class)
    semi_supervised: bool = False
    loss: str = "non_saturating"  # the loss it trains with unless told another
    # its generator learns an encoder beside it, judged by a discriminator of (image, latent) pairs (BiGAN / ALI;
    # gan_core.updates.BidirectionalUpdate)
    bidirectional: bool = False


# paper_mlp with several generators or discriminators: name -> (the recipe's player counts, description)
_SEVERAL_PLAYERS = {
    "paper_mlp_3g": (
        {"n_generators": 3},
        "three paper_mlp generators sharing one discriminator (a mixture, MGAN-style, no classifier)",
    ),
    "paper_mlp_3d": (
        {"n_discriminators": 3},
        "one paper_mlp generator against three discriminators (GMAN, the mean of their losses)",
    ),
}

MODELS: Mapping[str, ModelSpec] = by_name(
    ModelSpec(
        "paper_mlp",
        _paper_mlp((1200, 1200), 240, 5),
        description="the paper's MNIST model: ReLU MLP generator, maxout discriminator with dropout",
        batchable=True,
    ),
    ModelSpec(
        "dcgan",
        _dcgan(64),
        recipe=ADAM_ALTERNATING,
        description="DCGAN-style convolutional pair for 8..56-pixel images, Adam (Radford et al., 2016)",
    ),
    ModelSpec(
        "paper_mlp_cond",
        _paper_mlp((1200, 1200), 240, 5, conditional=True),
        description="conditional paper_mlp (Mirza & Osindero, 2014): one-hot label beside G's noise and D's pixels",
        conditional=True,
    ),
    ModelSpec(
        "dcgan_cond",
        _dcgan(64, conditional=True),
        recipe=ADAM_ALTERNATING,
        description="conditional dcgan: one-hot label beside G's noise, one plane per class beside D's input",
        conditional=True,
    ),
    ModelSpec(
        "dcgan_sn",
        _dcgan(64, spectral_norm=True),
        recipe={**ADAM_ALTERNATING, "batch_size": 64, "epochs": 8, "ema_decay": 0.999},
        description="dcgan with a spectrally normalised D (Miyato et al., 2018), Adam, batch 64, generator average",
    ),
    *(
        ModelSpec(name, _paper_mlp((1200, 1200), 240, 5), recipe=players, description=text, batchable=True)
        for name, (players, text) in _SEVERAL_PLAYERS.items()
    ),
    ModelSpec(
        "paper_mlp_ssl",
        _semi_supervised,
        recipe={**ADAM_ALTERNATING, "learning_rate": 0.003, "labels_per_class": 10},
        description="semi-supervised GAN (Salimans et al., 2016): D a K-class classifier on 10 labels per class, G "
        "trained by feature matching, Adam",
        semi_supervised=True,
        loss="feature_matching",
    ),
    ModelSpec(
        "paper_mlp_bigan",
        _bidirectional,
        recipe=ADAM_ALTERNATING,
        description="BiGAN / ALI (Donahue et al.; Dumoulin et al., 2016): the paper's generator with an encoder, D of "
        "(x, z) pairs, Adam",
        bidirectional=True,
    ),
    ModelSpec(
        "paper_mlp_large",
        _paper_mlp((8000, 8000), 1600, 5),
        description="the paper's wider fully connected variant (CIFAR-10 / TFD scale): G 8000 x 2, D maxout 1600",
        batchable=True,
    ),
)


def get_model_spec(name: str) -> ModelSpec:
    """The registered model called `name`; an unknown name lists the known ones."""
    return lookup(MODELS, name, "model")


def build_models(name: str, image_shape: ImageShape, num_classes: int = 0) -> ModelPair:
    """Build the named generator/discriminator pair for images of `image_shape` (C, H, W); a conditional model needs
    the number of classes."""
    spec = get_model_spec(name)
    if spec.conditional and num_classes < 2:
        raise ValueError(f"model {name!r} is conditional: it needs the dataset's classes, not {num_classes}")
    return spec.build(tuple(image_shape), num_classes)  # type: ignore[arg-type]


class GeneratorMixture(nn.Module):
    """k generators sharing one discriminator (MGAN-style, without its classifier head): each sample comes from a
    uniformly chosen generator, or from the one `which` names (sampling records it)."""

    def __init__(self, generators: list[nn.Module]) -> None:
        super().__init__()
        self.generators = nn.ModuleList(generators)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, which: torch.Tensor | None = None
    ) -> torch.Tensor:
        which = torch.randint(len(self.generators), (z.shape[0],), device=z.device) if which is None else which
        out: torch.Tensor | None = None
        for index, generator in enumerate(self.generators):
            rows = (which == index).nonzero().squeeze(1)
            if len(rows) == 0:  # (batch norm cannot run on an empty batch)
                continue
            part = generator(z[rows]) if labels is None else generator(z[rows], labels[rows])
            out = part.new_empty(z.shape[0], *part.shape[1:]) if out is None else out
            out = out.index_copy(0, rows, part)  # out of place: autograd reaches every generator's part
        return out  # type: ignore[return-value]


class DiscriminatorEnsemble(nn.Module):
    """k discriminators judging the same images (GMAN, Durugkar et al. 2017): logits of shape k x batch; the trainer
    averages the k discriminators' losses, and the generator's loss against them (GMAN's mean)."""

    def __init__(self, discriminators: list[nn.Module]) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([d(x) if labels is None else d(x, labels) for d in self.discriminators])


def build_model_pair(
    name: str, image_shape: ImageShape, num_classes: int = 0, n_generators: int = 1, n_discriminators: int = 1
) -> ModelPair:
    """The named pair, or with several generators (a `GeneratorMixture`) and/or several discriminators (a
    `DiscriminatorEnsemble`), each player initialised on its own; one of each is exactly `build_models`."""
    pairs = [build_models(name, image_shape, num_classes) for _ in range(max(n_generators, n_discriminators))]
    generators = [pair.generator for pair in pairs[:n_generators]]
    generator = generators[0] if n_generators == 1 else GeneratorMixture(generators)
    discriminator = (
        pairs[0].discriminator
        if n_discriminators == 1
        else DiscriminatorEnsemble([p.discriminator for p in pairs[:n_discriminators]])
    )
    return ModelPair(generator, discriminator, pairs[0].noise_dim, pairs[0].num_classes)


@torch.no_grad()
def init_output_bias_from_marginals(generator: nn.Module, train_images: torch.Tensor) -> None:
    """Set an MLP generator's output bias to the logit of each pixel's training mean, clipped to [1e-7, 1 - 1e-7]
    as pylearn2's `init_sigmoid_bias_from_marginals` does (pixels never lit in training start at logit -16)."""
    if isinstance(generator, GeneratorMixture):
        for member in generator.generators:
            init_output_bias_from_marginals(member, train_images)
        return
    if isinstance(generator, BidirectionalGenerator):
        generator = generator.decoder
    if not isinstance(generator, MLPGenerator):
        return
    mean = train_images.flatten(1).double().mean(0).clamp(1e-7, 1 - 1e-7)
    generator.output.bias.copy_(torch.log(mean / (1 - mean)).to(generator.output.bias))
