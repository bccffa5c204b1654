"""Max-pooling with PyTorch's `nn.MaxPool2d` semantics (NHWC, no padding, floor mode)."""
import flax.linen as nn


def max_pool(x, window, stride):
    """`nn.MaxPool2d(window, stride)` of `x` [B,H,W,C].

    A pool whose windows tile the image (window == stride, VGG's 2x2) is a reshape and a max:
    the same values, and a gradient that is one comparison per element. XLA differentiates the
    windowed form (`reduce_window`) through index arrays as large as the input (on CPU the VGG
    pools' gradients were 10% of the `quick` step's op time). Where a window holds the maximum twice
    the gradient is split between them (PyTorch gives it all to the first); after a ReLU such a
    tie is a window of zeros, whose gradient the ReLU zeroes either way."""
    if window != stride:
        return nn.max_pool(x, (window, window), (stride, stride))
    b, h, w, c = x.shape
    h, w = h // stride, w // stride
    x = x[:, :h * stride, :w * stride]
    return x.reshape(b, h, stride, w, stride, c).max(axis=(2, 4))
