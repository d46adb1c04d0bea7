// Placeholder: importPatched's generated modules (entry, replacements, sub-paths) are this file's URL plus a query,
// and the load hook serves their source. Importing it plainly does nothing.
export {};
