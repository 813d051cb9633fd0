"""A Leyr simulator: one EHR behind Leyr's unified API (``../shared/vendors/leyr.md``).

Enforced as the contract says: ``x-leyr-client-id`` and ``x-leyr-client-secret`` on every
call (401 ``UNAUTHORIZED`` otherwise); bare JSON arrays for lists; typed ids
(``se_personal_number:...``; a bare value is an ``emr_id``); create-or-return-existing
for patients; a list from appointment creation; PATCH to move or cancel; RFC 7807-like
error bodies with Leyr's ``error_code``s.

Where the contract is silent, this simulator chooses: a bare patient id also matches the
record's ``id``; the EHR takes the id types in ``id_types`` (``emr_id`` and
``se_personal_number`` by default) and answers 400 ``PATIENT_ID_LOOKUP_TYPE_NOT_SUPPORTED``
for the others; patients are upserted by ``external_id``, then ``emr_id``; in a care unit
marked ``cancel_requires_confirmation`` a cancel replaces the appointment by a new one in
``awaiting_confirmation`` (the old id is then gone) until confirmed with the code the
sandbox holds (:meth:`LeyrSandbox.confirmation_code`); a booking must not overlap an
active appointment of the same resource, nor lie in the past. [assumed] Opening hours:
each care unit is open Monday to Friday, 09:00-17:00 in the EHR's time zone, unless its
record (a ``--data`` file's ``care_units``) carries its own ``opening_hours``
(``{"monday": [{"start": "08:00", "end": "12:00"}, ...], ...}``, a day left out being
closed); free times lie within them, and a booking or a move whose time does not lie
wholly within one opening answers 400 ``NO_TIMESLOTS_AVAILABLE``, as a taken time does;
appointments the EHR already holds (generated or loaded) are not checked against them.

Modules: ``state`` (records by care unit, credentials, opening hours, lookups), ``rules``
(validation, booking, PATCH, free times), ``errors`` (Leyr's error bodies), ``routes``
(the FastAPI app), ``sandbox`` (:class:`LeyrSandbox`, state and app together).
"""

from adapter.sandbox.leyr.sandbox import LeyrSandbox

__all__ = ["LeyrSandbox"]
