"""Grid geometry from affines: one voxel-spacing and one RAS-grid function for every module."""

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation
from scipy.spatial.transform import Rotation

from disyre_monai.geometry import ras_grid, voxel_spacing


def test_voxel_spacing_is_the_column_length_whatever_the_rotation():
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [20, -35, 70], degrees=True).as_matrix() @ np.diag([0.9, 1.2, 3.0])
    assert np.allclose(voxel_spacing(affine), [0.9, 1.2, 3.0])
    assert np.allclose(voxel_spacing(torch.as_tensor(affine)), [0.9, 1.2, 3.0])


def test_ras_grid_is_the_grid_monai_and_nibabel_reorient_to():
    rng = np.random.default_rng(0)
    lps_permuted = np.array([[0, 0, -2.0, 90], [-1.5, 0, 0, 100], [0, 1.0, 0, -70], [0, 0, 0, 1]])
    data = rng.random((5, 6, 7)).astype(np.float32)
    ras_affine, ras_shape = ras_grid(lps_permuted, data.shape)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, lps_permuted))
    assert ras_shape == canonical.shape == (7, 5, 6)
    assert np.allclose(ras_affine, canonical.affine)
    volume = MetaTensor(torch.from_numpy(data)[None], affine=torch.as_tensor(lps_permuted))
    oriented = Orientation(axcodes="RAS")(volume)
    assert tuple(oriented.shape[1:]) == ras_shape and np.allclose(oriented.affine.numpy(), ras_affine)
