"""The global id codec is a bijection between (source, scope, vendor id) and FHIR ids."""

import strategies as gen
from hypothesis import given
from hypothesis import strategies as st

from mappings import GlobalId, IdTooLong, MalformedId, decode_id, encode_id
from mappings.common.ids import FHIR_ID

any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@given(gen.source_names, any_text, st.none() | any_text)
def test_encode_then_decode_is_identity_or_a_typed_refusal(source, vendor_id, scope):
    try:
        encoded = encode_id(source, vendor_id, scope)
    except IdTooLong as exc:
        assert exc.length > 64
        return
    assert FHIR_ID.fullmatch(encoded)
    assert decode_id(encoded) == GlobalId(source, vendor_id, scope)


@given(gen.source_names, gen.vendor_ids, gen.vendor_ids)
def test_distinct_ids_never_collide(source, a, b):
    if a != b:
        assert encode_id(source, a) != encode_id(source, b)
        assert encode_id(source, a, "cu") != encode_id(source, b, "cu")
    assert encode_id(source, a) != encode_id(source, a, "cu")


@given(gen.fhir_ids)
def test_every_fhir_id_decodes_canonically_or_is_refused(fhir_id):
    try:
        gid = decode_id(fhir_id)
    except MalformedId:
        return
    assert encode_id(gid.source, gid.vendor_id, gid.scope) == fhir_id


@given(st.uuids(), st.from_regex(r"[a-z0-9-]{1,27}", fullmatch=True))
def test_uuid_ids_fit_with_sources_up_to_27_characters(uuid, source):
    assert decode_id(encode_id(source, str(uuid))).vendor_id == str(uuid)
