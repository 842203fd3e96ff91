"""Prototype (issue #16): fine-tune the bundled denoiser adversarially, SimGAN-style.

The refiner R starts as ``--init`` (``denoiser-unet``). Its loss: ``--adv`` x the
non-saturating GAN loss of a small discriminator D on R(g), g samples of the bundled
generators (drawn from seed 1,000,003, never the seeds 0 and 1 they are judged with), +
``--self-reg`` x mean |R(g) - anchor| (the anchor: g itself, SimGAN's self-regularisation, or
with ``--anchor init`` the initial denoiser's output for g), + ``--identity`` x MSE(R(x), x)
on real training images (clean images pass), + ``--denoise`` x the supervised denoising loss
on corrupted real images. D (three strided convolutions and a linear layer) trains alone for
``--d-warmup`` steps, then ``--d-steps`` times per R step: real training images against R(g),
half of its fakes from a replay buffer of older refined images. Every ``--eval-every`` steps it
prints the Fréchet distance of ``--eval-n`` samples of each generator from seed 7 (never a
judged seed) and the clean change of 2,000 test images. Saves R as a store model (``FMT_HOME``).
It did not work: docs/gan.md, "An adversarially refined denoiser".

    FMT_HOME=/tmp/store OMP_NUM_THREADS=1 python scripts/refiner_prototype.py \
        --name refiner-e --anchor init --identity 1 --lr 2e-5 --d-steps 2 --pool 2000
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.nn import functional as F

from fmnist_toolkit.data import DeviceSplit, to_unit_float
from fmnist_toolkit.engine import denoise
from fmnist_toolkit.engine.gan_eval import _features_and_classes, frechet_distance
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.engine.sample import load_generator, sample_batches, sample_labels
from fmnist_toolkit.storage import ModelStore

GENERATORS = ("gan-mlp", "gan-dcgan", "gan-dcgan-cond")
MONITOR_SEED = 7  # the in-training check: never the judged seeds 0 and 1


def discriminator_net(width: int) -> nn.Module:
    """Three strided convolutions and a linear layer: one real/fake logit per image. (A
    patch discriminator, one logit per 7x7 position, barely separated real images from the
    MLP generator's samples in 200 steps; this one does in 200.)"""
    return nn.Sequential(
        nn.Conv2d(1, width, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(2 * width, 4 * width, 3, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(4 * width * 4 * 4, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--init", default="denoiser-unet")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=48)  # generator samples per step
    parser.add_argument("--adv", type=float, default=1.0)
    parser.add_argument("--self-reg", type=float, default=5.0)
    parser.add_argument("--identity", type=float, default=10.0)
    parser.add_argument("--denoise", type=float, default=0.0)
    parser.add_argument(
        "--anchor",
        choices=("input", "init"),
        default="input",
        help="self-regularise towards the sample (SimGAN) or the initial denoiser's output",
    )
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--d-lr", type=float, default=5e-4)
    parser.add_argument("--d-width", type=int, default=32)
    parser.add_argument("--d-steps", type=int, default=1, help="D updates per R update")
    parser.add_argument("--pool", type=int, default=4000, help="samples per generator")
    parser.add_argument("--generators", nargs="*", default=list(GENERATORS))
    parser.add_argument("--d-warmup", type=int, default=300, help="steps that train D alone")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = torch.Generator().manual_seed(args.seed)
    cpu = torch.device("cpu")
    store = ModelStore()

    train = DeviceSplit.load("train", args.data_dir, cpu)
    pools = [
        to_unit_float(denoise.generator_samples((name,), args.pool, store, cpu))
        for name in args.generators
    ]
    refiner = load_model(args.init, store=store).train()
    initial = load_model(args.init, store=store)  # frozen, eval mode
    discriminator = discriminator_net(args.d_width)
    r_optimizer = torch.optim.Adam(refiner.parameters(), lr=args.lr, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.d_lr, betas=(0.5, 0.999))
    replay: torch.Tensor | None = None

    # The monitor: N samples of each generator from MONITOR_SEED against the test images.
    classifier = load_model("clf-ae-wide-16-ft", store=store)
    test = DeviceSplit.load("test", args.data_dir, cpu)
    with torch.no_grad():
        reference = _features_and_classes(classifier, to_unit_float(test.images))[0].numpy()
        monitor = {}
        for name in GENERATORS:
            generator = load_generator(name, store)
            labels = sample_labels(generator, args.eval_n)
            monitor[name] = torch.cat(
                [
                    r
                    for r, _ in sample_batches(
                        generator, None, args.eval_n, MONITOR_SEED, labels, truncation=1
                    )
                ]
            )

    def measure() -> dict[str, float]:
        refiner.eval()
        result = {}
        with torch.no_grad():
            for name, images in monitor.items():
                features = torch.cat(
                    [
                        _features_and_classes(classifier, refiner(part))[0]
                        for part in images.split(1000)
                    ]
                )
                result[name] = round(frechet_distance(features.numpy(), reference), 2)
            clean = to_unit_float(test.images[:2000])
            result["clean"] = round(float(F.mse_loss(refiner(clean), clean)), 6)
        refiner.train()
        return result

    history = [{"step": 0, **measure()}]
    print(json.dumps(history[-1]), flush=True)
    per_generator = args.batch_size // len(pools)

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        fakes = torch.cat(
            [pool[torch.randint(len(pool), (per_generator,), generator=rng)] for pool in pools]
        )
        reals = to_unit_float(
            train.images[torch.randint(len(train), (args.batch_size,), generator=rng)]
        )
        return fakes, reals

    def update_discriminator(reals: torch.Tensor, detached: torch.Tensor) -> torch.Tensor:
        """Real images against refined ones, half of them older ones from the replay buffer."""
        nonlocal replay
        shown = detached
        if replay is not None and len(replay) >= len(detached):
            half = len(detached) // 2
            old = replay[torch.randperm(len(replay), generator=rng)[:half]]
            shown = torch.cat([detached[half:], old])
        d_loss = (
            F.softplus(-discriminator(reals * 2 - 1)).mean()
            + F.softplus(discriminator(shown * 2 - 1)).mean()
        )
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()
        replay = detached if replay is None else torch.cat([replay, detached])[-2000:]
        return d_loss

    for step in range(1, args.d_warmup + args.steps + 1):
        fakes, reals = draw()
        if step <= args.d_warmup:
            with torch.no_grad():
                refined = refiner(fakes)
        else:
            refined = refiner(fakes)
        d_loss = update_discriminator(reals, refined.detach())
        for _ in range(args.d_steps - 1):
            extra_fakes, extra_reals = draw()
            with torch.no_grad():
                extra = refiner(extra_fakes)
            update_discriminator(extra_reals, extra)

        if step <= args.d_warmup:
            if step % 20 == 0:
                print(f"step {step} d {d_loss.item():.3f} (D alone)", flush=True)
            continue
        # R: fool D, stay close to the sample, pass real images unchanged (or denoise them).
        adversarial = F.softplus(-discriminator(refined * 2 - 1)).mean()
        if args.anchor == "init":
            with torch.no_grad():
                anchor = initial(fakes)
        else:
            anchor = fakes
        self_reg = (refined - anchor).abs().mean()
        identity_inputs = reals[: args.batch_size // 2]
        identity = F.mse_loss(refiner(identity_inputs), identity_inputs)
        loss = args.adv * adversarial + args.self_reg * self_reg + args.identity * identity
        if args.denoise:
            clean = reals[args.batch_size // 2 :]
            noisy = denoise.corrupt(clean, rng)
            loss = loss + args.denoise * F.mse_loss(refiner(noisy), clean)
        r_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        r_optimizer.step()
        if step % 20 == 0:
            print(
                f"step {step} d {d_loss.item():.3f} adv {adversarial.item():.3f} "
                f"self {self_reg.item():.4f} id {identity.item():.6f} "
                f"{time.perf_counter() - started:.0f}s",
                flush=True,
            )
        trained = step - args.d_warmup
        if trained % args.eval_every == 0 or trained == args.steps:
            history.append({"step": step, **measure()})
            print(json.dumps(history[-1]), flush=True)

    config = dict(store.read_config(args.init))
    for key in ("weights_sha256", "created", "history", "seconds", "metrics"):
        config.pop(key, None)
    config["name"] = args.name
    config["refine"] = {**vars(args), "generators": list(args.generators)}
    config["refine_history"] = history
    config["seconds"] = time.perf_counter() - started
    path = store.save(args.name, refiner.eval().state_dict(), config)
    print(f"saved {path} after {config['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
