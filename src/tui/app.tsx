// The TUI's root: reducers hold the state, hooks feed them (daemon events, keys, the clock),
// and the views below render it into the terminal's size.
import { Box, useApp } from 'ink';
import { useCallback, useMemo, useReducer } from 'react';
import type { TuiClient } from './client.js';
import { TuiProvider } from './context.js';
import { COLOR_THEME, type Theme } from './theme.js';
import { filterVms, initialVmsState, vmsReducer } from './state/vms.js';
import { initialUiState, isBusy, selectedRow, statusLines, uiReducer, type UiState } from './state/ui.js';
import { checkForm, formReducer, initialFormState, visibleErrors } from './state/form.js';
import { initialLogsState, logsReducer } from './state/logs.js';
import { useDaemonSync, type ProgressEvent, type SyncOptions } from './hooks/use-daemon-sync.js';
import { useActions } from './hooks/use-actions.js';
import { useNow } from './hooks/use-clock.js';
import { useTerminalSize } from './hooks/use-terminal-size.js';
import { useConsoleFollow, useConsoleTail } from './hooks/use-console.js';
import { handleConfirmKey, handleFilterKey, handleFormKey, handleHelpKey, handleImagesKey, handleLogsKey, handleTableKey, useKeys } from './hooks/use-keys.js';
import { Header, ReconnectBanner } from './components/header.js';
import { VmTable } from './components/vm-table.js';
import { VmDetails, detailsHeaderLines } from './components/vm-details.js';
import { LogsView } from './components/logs-view.js';
import { ImagesView } from './components/images-view.js';
import { CreateForm } from './components/create-form.js';
import { HelpOverlay } from './components/help.js';
import { ConfirmDelete } from './components/confirm-delete.js';
import { FilterLine, KeyHints, STATUS_LINES, StatusArea } from './components/status-bar.js';

export interface AppProps {
  client: TuiClient;
  theme?: Theme;
  sync?: SyncOptions;
}

export function App({ client, theme = COLOR_THEME, sync }: AppProps) {
  return (
    <TuiProvider client={client} theme={theme}>
      <Main sync={sync} />
    </TuiProvider>
  );
}

/** Terminals at least this wide show the details beside the table instead of under it. */
export const SIDE_BY_SIDE_COLUMNS = 120;

type Hints = [string, string][];
const TABLE_HINTS: Hints = [
  ['s', 'start'],
  ['x', 'stop'],
  ['r', 'restart'],
  ['d', 'delete'],
  ['e', 'ssh'],
  ['l', 'logs'],
  ['n', 'new'],
  ['q', 'quit'],
  ['i', 'images'],
  ['/', 'filter'],
];

function hintsFor(ui: UiState): Hints {
  if (ui.overlay?.kind === 'help') return [['any key', 'closes help']];
  if (ui.overlay?.kind === 'confirm-delete') return [['y', 'delete'], ['n', 'keep']];
  switch (ui.screen) {
    case 'table':
      return TABLE_HINTS;
    case 'logs':
      return [['↑↓ PgUp PgDn', 'scroll'], ['f', 'follow'], ['g', 'top'], ['Esc', 'back']];
    case 'images':
      return [['↑↓', 'select'], ['n', 'new VM from it'], ['Esc', 'back']];
    case 'create':
      return [['Enter', 'create'], ['Tab', 'next field'], ['Esc', 'cancel']];
  }
}

function Main({ sync }: { sync?: SyncOptions }) {
  const { exit } = useApp();
  const [vms, vmsDispatch] = useReducer(vmsReducer, initialVmsState);
  const [ui, dispatch] = useReducer(uiReducer, initialUiState);
  const [form, formDispatch] = useReducer(formReducer, initialFormState);
  const [logs, logsDispatch] = useReducer(logsReducer, initialLogsState);

  const onProgress = useCallback(
    (e: ProgressEvent) => dispatch({ type: 'op.progress', opId: e.opId, vmId: e.vmId, phase: e.phase, detail: e.detail }),
    [],
  );
  const onNotice = useCallback((text: string) => dispatch({ type: 'notice', notice: { tone: 'info', text } }), []);
  useDaemonSync(vmsDispatch, onProgress, sync, onNotice);
  const actions = useActions(dispatch);
  const { columns, rows } = useTerminalSize();
  const isWorking = ui.ops.some((o) => o.status === 'running');
  const now = useNow(isWorking ? 200 : 1000);

  const visible = useMemo(() => filterVms(vms.vms, ui.filter), [vms.vms, ui.filter]);
  const ids = useMemo(() => visible.map((v) => v.id), [visible]);
  const row = selectedRow(ids, ui);
  const selected = row >= 0 ? visible[row] : null;
  const busy = useMemo(() => new Set(vms.vms.filter((v) => isBusy(ui, v.id)).map((v) => v.id)), [vms.vms, ui]);
  const overlay = ui.overlay;
  const confirmVm = overlay?.kind === 'confirm-delete' ? (vms.vms.find((v) => v.id === overlay.vmId) ?? null) : null;
  const logsVm = vms.vms.find((v) => v.id === ui.logsVmId) ?? null;
  const isSuspended = ui.suspendedFor !== null;

  // Layout: header, optional banner, main area, status lines, optional filter line, key hints.
  const bannerLines = vms.connection.status === 'reconnecting' ? 1 : 0;
  const filterLines = ui.isFiltering ? 1 : 0;
  const mainHeight = Math.max(rows - 1 - bannerLines - STATUS_LINES - filterLines - 1, 4);
  const isSideBySide = columns >= SIDE_BY_SIDE_COLUMNS;
  const tableWidth = isSideBySide ? Math.floor(columns * 0.55) : columns;
  const detailsWidth = isSideBySide ? columns - tableWidth - 2 : columns;
  const tableRows = isSideBySide ? mainHeight - 1 : Math.min(Math.max(visible.length, 1), Math.max(3, Math.floor(mainHeight / 2) - 1));
  const detailsHeight = isSideBySide ? mainHeight : mainHeight - tableRows - 1;
  const consoleRoom = selected ? Math.max(detailsHeight - detailsHeaderLines(selected, detailsWidth), 0) : 0;
  const tailVm = ui.screen === 'table' && !isSuspended && overlay === null ? (selected?.id ?? null) : null;
  const consoleTail = useConsoleTail(tailVm, consoleRoom, Math.floor(now / 1000));
  useConsoleFollow(ui.screen === 'logs' ? ui.logsVmId : null, logsDispatch);

  const openCreate = (imageIndex = 0) => {
    formDispatch({ type: 'reset', imageIndex });
    dispatch({ type: 'screen', screen: 'create' });
  };
  const check = checkForm(form, vms.images, vms.vms);
  const submit = () => {
    if (check.request) {
      actions.create(check.request, check.request.name ?? 'a new VM');
      dispatch({ type: 'screen', screen: 'table' });
    } else {
      formDispatch({ type: 'submit.attempt' });
    }
  };

  // Keys go to the overlay when one is open, else to the screen; none while ssh has the terminal.
  useKeys(!isSuspended, (input, key) => {
    if (overlay?.kind === 'help') return handleHelpKey(dispatch);
    if (overlay?.kind === 'confirm-delete') return handleConfirmKey(confirmVm, dispatch, actions, input, key);
    switch (ui.screen) {
      case 'table':
        if (ui.isFiltering) return handleFilterKey(ids, dispatch, input, key);
        return handleTableKey(
          { ids, selected, page: tableRows, hasFilter: ui.filter !== '', dispatch, actions, openCreate: () => openCreate(), quit: exit },
          input,
          key,
        );
      case 'logs':
        return handleLogsKey(mainHeight - 2, dispatch, logsDispatch, input, key);
      case 'images':
        return handleImagesKey(vms.images.length, dispatch, () => openCreate(ui.imageIndex), input, key);
      case 'create':
        return handleFormKey(
          { form, imageCount: vms.images.length, dispatch: formDispatch, submit, cancel: () => dispatch({ type: 'screen', screen: 'table' }) },
          input,
          key,
        );
    }
  });

  let main;
  if (overlay?.kind === 'help') {
    main = <HelpOverlay width={columns} height={mainHeight} />;
  } else if (ui.screen === 'logs') {
    main = <LogsView name={logsVm?.name ?? ui.logsVmId ?? ''} logs={logs} width={columns} height={mainHeight} />;
  } else if (ui.screen === 'images') {
    main = <ImagesView images={vms.images} selected={ui.imageIndex} now={now} width={columns} height={mainHeight} />;
  } else if (ui.screen === 'create') {
    main = <CreateForm form={form} images={vms.images} errors={visibleErrors(form, check)} width={columns} height={mainHeight} />;
  } else {
    const below =
      overlay?.kind === 'confirm-delete' ? (
        <ConfirmDelete name={overlay.name} isRunning={confirmVm ? confirmVm.state !== 'stopped' && confirmVm.state !== 'error' : overlay.isRunning} width={detailsWidth} />
      ) : (
        <VmDetails vm={selected} consoleLines={consoleTail} now={now} width={detailsWidth} height={detailsHeight} />
      );
    main = (
      <Box flexDirection={isSideBySide ? 'row' : 'column'} width={columns} height={mainHeight}>
        <VmTable vms={visible} selected={row} busy={busy} now={now} width={tableWidth} height={tableRows} isLoaded={vms.isLoaded} filter={ui.filter} />
        <Box flexDirection="column" marginLeft={isSideBySide ? 2 : 0} width={detailsWidth} height={detailsHeight}>
          {below}
        </Box>
      </Box>
    );
  }

  return (
    <Box flexDirection="column" width={columns} height={rows}>
      <Header vms={vms.vms} shown={visible.length} filter={ui.filter} connection={vms.connection} width={columns} />
      <ReconnectBanner connection={vms.connection} now={now} width={columns} />
      <Box width={columns} height={mainHeight} overflow="hidden">
        {main}
      </Box>
      <StatusArea lines={isSuspended ? [{ tone: 'info', text: `${ui.suspendedFor} in progress` }] : statusLines(ui, now)} width={columns} />
      {ui.isFiltering ? <FilterLine filter={ui.filter} width={columns} /> : null}
      <KeyHints hints={hintsFor(ui)} width={columns} hasHelp={ui.overlay === null && ui.screen !== 'create'} />
    </Box>
  );
}
