//! Dataset loading for `fhec eval` and `fhec sweep` (being written).
