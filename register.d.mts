// evy/register is imported for its side effect (patching before the app loads): it exports nothing.
export {};
