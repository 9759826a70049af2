import torch


def packed_to_padded(inputs: torch.Tensor, first_idxs: torch.Tensor, max_size: int) -> torch.Tensor:
    """(B, max_size[, D]) from a packed (F[, D]) tensor split at first_idxs, zero padded."""
    starts = [int(i) for i in first_idxs] + [len(inputs)]
    out = inputs.new_zeros((len(starts) - 1, max_size) + inputs.shape[1:])
    for b in range(len(starts) - 1):
        out[b, : starts[b + 1] - starts[b]] = inputs[starts[b]: starts[b + 1]]
    return out
