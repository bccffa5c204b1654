"""A TensorFlow Datasets builder for clip shards: ``fnevr_clips``.

Use it when your pipeline is built on TFDS (``tfds.data_source``, ``tfds.load``, TFDS
catalogues and versioning). The builder reads a dataset written by ``data_pipelines.preprocess``
or ``data_pipelines.synthetic`` and rewrites each split as TFDS ArrayRecord shards
(``fnevr_clips-{split}.array_record-{i:05d}-of-{n:05d}``), one example per clip with typed
features, decoded by TFDS into numpy:

    builder = fnevr_clips_builder("/data/vox-shards", data_dir="/data/tfds")
    builder.download_and_prepare()
    source = tfds.data_source("fnevr_clips", data_dir="/data/tfds", split="train")
    clip = source[0]   # frames (T, H, W, 3) uint8, clip_id, identity, pose (T, 3), ...

The project's own loaders (``fnevr_jax.data.loaders``) read the original shards directly and
decode only the frames they sample; they do not need TFDS. Import this module only when TFDS
is wanted: it imports ``tensorflow_datasets``.
"""
from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds

from fnevr_jax.data import shards

NAME = "fnevr_clips"


def _features(info: shards.DatasetInfo, sample: dict) -> tfds.features.FeaturesDict:
    h, w = info.height, info.width
    fmt = "png" if info.encoding == "png" else "jpeg"
    spec = {"clip_id": tfds.features.Text(), "identity": tfds.features.Text(),
            "fps": tfds.features.Scalar(np.float32),
            "frames": tfds.features.Sequence(tfds.features.Image(shape=(h, w, 3),
                                                                 encoding_format=fmt))}
    for name in info.fields:
        if name == "mask":
            spec[name] = tfds.features.Sequence(tfds.features.Image(shape=(h, w, 1),
                                                                    encoding_format="png"))
        else:
            spec[name] = tfds.features.Tensor(shape=(None,) + sample[name].shape[1:],
                                              dtype=np.float32)
    return tfds.features.FeaturesDict(spec)


class FnevrClips(tfds.core.GeneratorBasedBuilder):
    """Talking-head clips from a ``data_pipelines`` shard directory (``source_dir``).

    Without ``source_dir`` the builder only reads what was prepared before (as
    ``tfds.data_source("fnevr_clips", data_dir=...)`` constructs it).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    name = NAME

    def __init__(self, *, source_dir=None, **kwargs):
        self._source_dir = None if source_dir is None else pathlib.Path(source_dir)
        if self._source_dir is not None:
            self._source_info = shards.read_info(self._source_dir)
        super().__init__(file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        if self._source_dir is None:
            return self.dataset_info_from_configs(
                features=tfds.features.FeatureConnector.from_config(str(self.data_dir)))
        split = next(iter(self._source_info.splits))
        sample = shards.decode_clip(shards.open_split(self._source_dir, split).source()[0])
        return self.dataset_info_from_configs(
            description=f"Clips from {self._source_dir} ({self._source_info.source}).",
            features=_features(self._source_info, sample))

    def _split_generators(self, dl_manager):
        return {name: self._generate_examples(name) for name in self._source_info.splits}

    def _generate_examples(self, split):
        source = shards.open_split(self._source_dir, split).source()
        for i in range(len(source)):
            rec = shards.decode_clip(source[i])
            ex = {"clip_id": rec["clip_id"], "identity": rec["identity"], "fps": rec["fps"],
                  "frames": list(shards.clip_frames(rec))}
            for name in self._source_info.fields:
                if name == "mask":
                    ex[name] = list(shards.clip_masks(rec).astype(np.uint8)[..., None])
                else:
                    ex[name] = rec[name]
            yield rec["clip_id"], ex


def fnevr_clips_builder(source_dir, data_dir) -> FnevrClips:
    """The builder for ``source_dir`` writing under ``data_dir``."""
    return FnevrClips(source_dir=source_dir, data_dir=str(data_dir))
