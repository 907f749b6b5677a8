"""Dataset classes matched to a model's by name: renames, subsets, ignored and unknown classes."""
import json
import warnings

import pytest

from ssdq.data.classmap import load_class_map, match_classes
from ssdq.data.dataset import open_dataset
from ssdq.errors import SsdqError, SsdqNote

from helpers import write_labelme_export

SYNTHETIC = ("circle", "square", "triangle", "star", "cross", "ring")


@pytest.fixture(scope="module")
def labelme(tiny_data, tmp_path_factory):
    """labelme-style export of 4 val images, two classes spelled differently from the model."""
    names = ("circle", "Square", "triangle", "star", "cross", "annulus")
    return write_labelme_export(str(tmp_path_factory.mktemp("labelme")), tiny_data, 4, names)


def test_same_names_in_another_order_match_by_name(tiny_data):
    ds = open_dataset(tiny_data, "val")
    match = match_classes(ds, tuple(reversed(SYNTHETIC)))
    assert match.dataset_to_model == {d: 5 - d for d in range(6)}
    assert match.scored == SYNTHETIC and match.ignored == ()


def test_background_without_annotations_is_ignored_with_a_note(labelme):
    ds = open_dataset(annotations=labelme, class_map={"Square": "square", "annulus": "ring"})
    assert ds.classes[0] == "_background_" and ds.annotation_counts()["_background_"] == 0
    with pytest.warns(SsdqNote, match="_background_"):
        match = match_classes(ds, SYNTHETIC)
    assert match.ignored == ("_background_",)
    assert match.describe()["classes_renamed"] == {"Square": "square", "annulus": "ring"}
    assert [SYNTHETIC[match.dataset_to_model[d]] for d in range(1, 7)] == list(SYNTHETIC)


def test_annotated_class_the_model_lacks_names_it_and_the_fix(labelme):
    ds = open_dataset(annotations=labelme, class_map={"Square": "square"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SsdqNote)
        with pytest.raises(SsdqError, match=r"dataset class 'annulus' has \d+ annotations but is "
                                            r"not a class of the model .*--class-map FILE"):
            match_classes(ds, SYNTHETIC)


def test_dataset_subset_of_the_model_is_scored_on_its_classes(tiny_data):
    ds = open_dataset(tiny_data, "val")
    model = ("person", "car") + SYNTHETIC
    match = match_classes(ds, model)
    assert match.model_to_dataset == {m + 2: m for m in range(6)}
    assert match.describe() == {"classes_scored": list(SYNTHETIC), "model_classes_not_scored": 2}


def test_class_map_mistakes_are_clean_errors(tiny_data, tmp_path):
    ds = open_dataset(tiny_data, "val", class_map={"disc": "circle"})
    with pytest.raises(SsdqError, match="renames 'disc', which is not a class of the dataset"):
        match_classes(ds, SYNTHETIC)
    ds.class_map = {"square": "circle"}
    with pytest.raises(SsdqError, match="'circle' and 'square' both map to the model's class 'circle'"):
        match_classes(ds, SYNTHETIC)
    with pytest.raises(SsdqError, match="none of the dataset's classes"):
        match_classes(open_dataset(tiny_data, "val"), ("person", "car"))
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps(["circle"]))
    with pytest.raises(SsdqError, match="must be a JSON object"):
        load_class_map(str(bad))
    bad.write_text("{")
    with pytest.raises(SsdqError, match="not valid JSON"):
        load_class_map(str(bad))
    with pytest.raises(SsdqError, match="class map file not found"):
        load_class_map(str(tmp_path / "none.json"))
