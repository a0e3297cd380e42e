"""Shared by the driver scripts: build Nova objects from JSON, read them back as JSON.

``{"$obj": "Name", ...fields}`` builds ``nova.objects.Name(**fields)`` (ImageMeta through
``from_dict``) and ``{"$set": [...]}`` a set; ``read`` turns an object into
``{"name", "version", "fields"}`` with its set fields only, nested objects alike.
"""

from nova import objects
from nova.objects import base


def build(desc):
    if isinstance(desc, list):
        return [build(item) for item in desc]
    if not isinstance(desc, dict):
        return desc
    if "$set" in desc:
        return {build(item) for item in desc["$set"]}
    if "$obj" in desc:
        cls = getattr(objects, desc["$obj"])
        fields = {k: build(v) for k, v in desc.items() if k != "$obj"}
        if desc["$obj"] == "ImageMeta":
            return cls.from_dict(fields)
        return cls(**fields)
    return {key: build(value) for key, value in desc.items()}


def read(value):
    if isinstance(value, base.NovaObject):
        return {
            "name": value.obj_name(),
            "version": value.VERSION,
            "fields": {
                name: read(getattr(value, name))
                for name in sorted(value.fields)
                if value.obj_attr_is_set(name)
            },
        }
    if isinstance(value, set | frozenset):
        return sorted(read(v) for v in value)
    if isinstance(value, list | tuple):
        return [read(v) for v in value]
    if isinstance(value, dict):
        return {str(k): read(v) for k, v in value.items()}
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)
