// TypeDoc plugin (typedoc.json): names each documented entry point as users import it
// (`openrouter-rx`, `openrouter-rx/testing`, ...) instead of by its file (`index`, `testing`, ...),
// without a `@module` tag in the source.
import { Converter, ReflectionKind } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    for (const entry of context.project.getReflectionsByKind(ReflectionKind.Module)) {
      entry.name = entry.name === 'index' ? 'openrouter-rx' : `openrouter-rx/${entry.name}`;
    }
  });
}
