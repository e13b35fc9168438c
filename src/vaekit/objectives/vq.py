"""The VQ-VAE's training loss (van den Oord et al. 2017, eq. 3): the reconstruction through the
straight-through codes, beta ||z_e - sg[z_q]||^2 to commit the encoder to its codes, and, unless
the codes follow moving averages, ||sg[z_e] - z_q||^2 to move the codes. After each training step
the trainer updates the codebook from the whole global batch's assignments (posteriors/vq.py),
through the terms' after-step hook; the figures it
reports are the codebook's perplexity, how many codes are in use, and how many were restarted.

The KL it reports is the rate -log p(codes) under the prior the model has (uniform while the
autoencoder trains: M log K), so -ELBO = reconstruction + rate is the bound vaekit reports."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from vaekit.objectives.base import ObjectiveTerms, StepBatch, per_item
from vaekit.posteriors.vq import assignment_statistics, perplexity


@dataclass(frozen=True)
class VectorQuantised:
    commitment: float  # beta
    terms: tuple[str, ...] = ("commitment", "codebook_perplexity", "codes_in_use", "codes_restarted")

    def __call__(self, model: Any, batch: StepBatch) -> ObjectiveTerms:
        posterior = model.encode(batch.x, batch.y)  # z_e, z_q (b, M, D), codes (b, M)
        recon = -model.log_likelihood(batch.x, model.decode(posterior.z, batch.y))  # (b,)
        commitment = self.commitment * (posterior.z_e - posterior.z_q.detach()).pow(2).sum((1, 2))
        loss = recon + commitment
        codebook = model.codebook
        if not codebook.ema:  # the codebook loss moves the codes; under EMA the update does
            loss = loss + (posterior.z_e.detach() - posterior.z_q).pow(2).sum((1, 2))
        training = model.training and torch.is_grad_enabled()  # a training step, never an evaluation
        after_step = None
        with torch.no_grad():
            vectors = posterior.z_e.detach().flatten(0, 1)  # (b M, D)
            counts, sums = assignment_statistics(vectors, posterior.codes.flatten(), codebook.size)
            counts, sums = batch.total(counts), batch.total(sums)  # the whole global batch's
            in_use = float(codebook.size - int(codebook.dead().sum()))
            restarted = 0
            if training:  # the codebook moves after the step, through the trainer's after-step hook
                candidates = self._candidates(posterior.z_e.detach(), batch, codebook)
                restarted = codebook.restarts(counts, len(candidates))
                after_step = functools.partial(codebook.update, counts, sums, candidates)
        extras = {
            "commitment": commitment.detach(),
            "codebook_perplexity": per_item(perplexity(counts), recon),
            "codes_in_use": per_item(recon.new_tensor(in_use), recon),
            "codes_restarted": per_item(recon.new_tensor(float(restarted)), recon),
        }
        return ObjectiveTerms(loss, recon, -model.log_prior(posterior.codes), extras, after_step=after_step)

    @staticmethod
    def _candidates(z_e: torch.Tensor, batch: StepBatch, codebook: Any) -> torch.Tensor:
        """Encodings of the global batch in a shared random order, as many as codes are dead (all of
        them at the first step): every rank draws the same ones, so the codebooks stay equal. (0, D)
        when none is dead."""
        dead = codebook.size if int(codebook.steps) == 0 else int(codebook.dead().sum())
        if dead == 0:
            return z_e.new_zeros((0, z_e.shape[-1]))
        pool = batch.gather(z_e).flatten(0, 1)  # (G M, D)
        order = torch.randperm(len(pool), generator=batch.generator, device=pool.device)[:dead]
        return pool[order]
