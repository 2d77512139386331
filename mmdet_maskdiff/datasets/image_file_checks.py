"""Image files of :class:`~.few_shot_coco.FewShotCocoDataset` against
their records: the files exist (checked once when a test set loads) and
every decoded image has the size of its record (checked as soon as the
pipeline's ``LoadImageFromFile`` decodes it).

The rules are documented on the dataset class; this mixin holds their code.
It uses the dataset's ``check_image_files``, ``test_mode``, ``pipeline``,
``data_prefix``, ``backend_args`` and ``_image_source``.
"""
from typing import Any, List

from mmcv.transforms import LoadImageFromFile

from .coco_records import (decoded_size_problem, is_local_path,
                           missing_image_files)


class ImageFileChecksMixin:
    """The image-file checks of ``FewShotCocoDataset``."""

    def _checks_image_files(self) -> bool:
        """Whether :meth:`load_data_list` checks the image files: as
        ``check_image_files`` says, by default for a test set whose pipeline
        loads images; local files only."""
        check = self.check_image_files
        if check is None:
            check = self.test_mode and any(
                isinstance(t, LoadImageFromFile)
                for t in self.pipeline.transforms)
        return bool(check) and is_local_path(self.data_prefix['img'],
                                             self.backend_args)

    def _check_image_files(self, data_list: List[dict]) -> None:
        """Raise ``FileNotFoundError`` naming the image folder, or the
        count and the first missing file, when images are missing
        (:func:`.coco_records.missing_image_files`)."""
        img_dir = self.data_prefix['img']
        folder_found, missing = missing_image_files(img_dir, data_list)
        if not folder_found:
            raise FileNotFoundError(
                f'image folder {img_dir} (data_prefix.img under data_root) '
                f'not found; it should hold the {len(data_list)} images of '
                f'{self._image_source}')
        if missing:
            first = missing[0]
            raise FileNotFoundError(
                f'{len(missing)} of {len(data_list)} image files of '
                f"{self._image_source} not found (first: image "
                f"{first['img_id']}, {first['img_path']}); check data_root "
                '/ data_prefix.img')

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline on data info ``idx``, as mmengine's
        ``Compose`` does, and check the image against its record as soon
        as ``LoadImageFromFile`` has decoded it (:meth:`_load_image`).

        The check sits here, and not in the pipeline config, so that it
        holds for every pipeline of every config, and before
        ``LoadAnnotations`` decodes the masks at the image's size.

        Returns:
            Any: the pipeline's output; ``None`` when a transform drops the
            sample (mmengine then draws another in training).
        """
        results = self.get_data_info(idx)
        for transform in self.pipeline.transforms:
            if isinstance(transform, LoadImageFromFile):
                results = self._load_image(transform, results)
            else:
                results = transform(results)
            if results is None:
                return None
        return results

    def _load_image(self, loader: LoadImageFromFile, info: dict) -> dict:
        """Run the image loader on one data info and check the decoded
        image (:func:`.coco_records.decoded_size_problem`).

        Raises:
            FileNotFoundError: the image file does not exist.
            ValueError: the decoded size differs from the record.
        """
        record = f"image {info['img_id']} of {self._image_source}"
        try:
            results = loader(info)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image file {info['img_path']} ({record}) not found; check "
                'data_root / data_prefix.img') from None
        if results is None:  # ignore_empty=True
            return results
        problem = decoded_size_problem(results['ori_shape'], info['width'],
                                       info['height'])
        if problem is not None:
            raise ValueError(
                f"image {info['img_path']} ({record}) {problem}: its boxes "
                'and masks would not fit the picture; correct width / '
                'height in the annotation file')
        return results
