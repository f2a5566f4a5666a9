//! EWS SOAP: GetFolder requests and the parsing of responses and faults.
