//! A module from the future: it says it speaks ABI version 99. The host must refuse it
//! with a message naming both versions. Written without the SDK, as a foreign module would be.

#[unsafe(no_mangle)]
pub extern "C" fn rulewatch_abi_version() -> u32 {
    99
}
