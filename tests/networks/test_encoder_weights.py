"""cDDPM's pretrained encoder: ``--encoder_weights PATH`` loads a SparK-pretrained (or any 1-channel) ResNet-50 into
the condition encoder, all but its head; wrong files are refused naming the layer."""

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import resnet50

from disyre_monai.networks.loading import load_encoder_weights

CONFIGS = Path(__file__).resolve().parents[2] / "bundle" / "configs"


def _resnet(channels: int = 1, classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return resnet50(spatial_dims=2, n_input_channels=channels, num_classes=classes, conv1_t_stride=2)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 'pretrained' ResNet-50 saved as a plain state dict and as the released SparK checkpoint layout."""
    folder, source = tmp_path_factory.mktemp("encoders"), _resnet(seed=1)
    torch.save(source.state_dict(), folder / "plain.pt")
    spark = {f"model.sparse_encoder.sp_cnn.{k}": v for k, v in source.state_dict().items()}
    spark["model.dense_decoder.dec.0.weight"] = torch.zeros(4)  # the SparK decoder is not part of the encoder
    torch.save({"state_dict": spark, "epoch": 3}, folder / "spark.ckpt")
    return source, folder


@pytest.mark.parametrize("name", ["plain.pt", "spark.ckpt"])
def test_pretrained_resnet_weights_load_into_the_encoder_but_its_head(pretrained, name):
    source, folder = pretrained
    encoder = _resnet(classes=512)
    head = encoder.fc.weight.clone()
    load_encoder_weights(encoder, folder / name)
    own = encoder.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.state_dict().items() if not k.startswith("fc."))
    assert torch.equal(encoder.fc.weight, head), "the condition head keeps its own initialisation"


def test_an_encoder_of_another_shape_is_refused_naming_the_layer(tmp_path):
    torch.save(_resnet(channels=3).state_dict(), tmp_path / "rgb.pt")
    with pytest.raises(ValueError, match=r"rgb.pt: layer 'conv1.weight' has shape \(64, 3, 7, 7\).*\(64, 1, 7, 7\)"):
        load_encoder_weights(_resnet(classes=512), tmp_path / "rgb.pt")
    torch.save({"conv1.weight": torch.zeros(64, 1, 7, 7)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="encoder layer\\(s\\) missing from the file"):
        load_encoder_weights(_resnet(classes=512), tmp_path / "partial.pt")


def test_cddpm_paper_config_takes_encoder_weights(pretrained):
    source, folder = pretrained
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in ("train.json", "cddpm.json", "cddpm_paper.json")])
    assert parser["encoder_weights"] is None  # the released pretrained_encoder=False variant by default
    parser["encoder_weights"] = str(folder / "spark.ckpt")
    network = parser.get_parsed_content("network_def")
    assert torch.equal(network.encoder.conv1.weight, source.conv1.weight)
